"""End-to-end training and evaluation on a tiny synthetic dataset: resume after an
interruption (in process and after kill -9) ends exactly like an uninterrupted run, the
evaluation protocols, MLflow records, DistributedDataParallel with 2 CPU processes, and the
loop's optimisation switches (`runtime.fused_optimizer`, `runtime.compile`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from benchmark import checkpoint
from benchmark.config import Params, load_params
from benchmark.data.synth import generate_synthetic
from benchmark.data.transforms import PairNormalize
from benchmark.errors import CdbenchError
from benchmark.evaluation.evaluate import evaluate_run
from benchmark.run import Trainable
from benchmark.training import loop
from benchmark.training.loop import train_run
from tests.conftest import runtime_config, synth_config
from tests.data.tiny import RUN, TINY, write_params

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/prepared with a 16/4/4-pair synthetic dataset of 64 x 64 images."""
    root = tmp_path_factory.mktemp("prepared")
    generate_synthetic(root / "synthetic", synth_config(size=64, train=16, val=4, test=4))
    return root


@pytest.fixture(scope="module")
def uninterrupted(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint folder of the tiny run, trained without interruption."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    params = load_params(write_params(folder, prepared))
    (spec,) = params.runs()
    train_run(params, spec, folder / "checkpoints" / RUN, tracking=False)
    return folder / "checkpoints" / RUN


def tiny_params(tmp_path: Path, prepared: Path) -> Params:
    return load_params(write_params(tmp_path, prepared))


@pytest.fixture
def params_path(tmp_path: Path, prepared: Path) -> Path:
    """tmp_path/params.yaml of the tiny run on the prepared dataset."""
    return write_params(tmp_path, prepared)


def assert_same_training(a: Path, b: Path) -> None:
    """Bit-identical weights, optimiser state, best model and history (bar the timings)."""
    last_a, last_b = checkpoint.load(a / "last.pt"), checkpoint.load(b / "last.pt")
    assert last_a["step"] == last_b["step"]
    for name, tensor in last_a["model_and_loss"].items():
        assert torch.equal(tensor, last_b["model_and_loss"][name]), name
    state_a, state_b = last_a["optimizer"]["state"], last_b["optimizer"]["state"]
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        for field, value in state_a[key].items():
            assert torch.equal(value, state_b[key][field]), (key, field)
    best_a, best_b = checkpoint.load(a / "best.pt"), checkpoint.load(b / "best.pt")
    assert best_a["step"] == best_b["step"]
    assert best_a["selection"] == best_b["selection"]
    for name, tensor in best_a["model_and_loss"].items():
        assert torch.equal(tensor, best_b["model_and_loss"][name]), name

    def without_timing(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in h.items() if k != "train/pairs_per_s"} for h in history]

    assert without_timing(last_a["history"]) == without_timing(last_b["history"])


def test_resume_after_interruption_ends_like_an_uninterrupted_run(
    tmp_path: Path, prepared: Path, uninterrupted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = tiny_params(tmp_path, prepared)
    (spec,) = params.runs()
    out = tmp_path / "checkpoints" / RUN
    original = Trainable.forward
    calls = {"n": 0}

    def interrupted_at_step_5(self: Trainable, *args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(Trainable, "forward", interrupted_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train_run(params, spec, out, tracking=False)
    assert checkpoint.load(out / "last.pt")["step"] == 4  # checkpoint_every 2
    assert not (out / "summary.json").exists()
    monkeypatch.setattr(Trainable, "forward", original)

    result = train_run(params, spec, out, tracking=False)
    assert result.resumed_from == 4 and result.steps == 6
    assert_same_training(uninterrupted, out)

    # The evaluation of both is the same, number for number.
    metrics_a = evaluate_run(params, spec, uninterrupted, tmp_path / "a", tracking=False)
    metrics_b = evaluate_run(params, spec, out, tmp_path / "b", tracking=False)
    assert {k: v for k, v in metrics_a.items() if k != "git_commit"} == {
        k: v for k, v in metrics_b.items() if k != "git_commit"
    }

    # A finished run is not trained again.
    again = train_run(params, spec, out, tracking=False)
    assert again.resumed_from == 6 and again.steps == 6


def test_checkpoint_of_another_configuration_is_set_aside(
    tmp_path: Path, prepared: Path, uninterrupted: Path
) -> None:
    out = tmp_path / "checkpoints" / RUN
    shutil.copytree(uninterrupted, out)
    recipe = dict(TINY["recipes"]["tiny"], iterations=3)
    params = load_params(write_params(tmp_path, prepared, {"recipes": {"tiny": recipe}}))
    (spec,) = params.runs()
    result = train_run(params, spec, out, tracking=False)
    assert result.resumed_from == 0 and result.steps == 3
    assert (out / "last.stale.pt").exists()
    assert checkpoint.load(out / "last.pt")["step"] == 3


def test_opencd_batches_get_their_photometric_distortion_in_the_loop(
    tmp_path: Path, prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the loader draws open-cd's photometric distortion (`colour`); the loop applies it to
    # each batch on the device, and the model sees its output
    applied: list[tuple[torch.Size, torch.Size, torch.Tensor]] = []
    real = loop.photometric_distortion

    def spy(image: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
        out = real(image, colour)
        applied.append((image.shape, colour.shape, out))
        return out

    seen: list[torch.Tensor] = []
    monkeypatch.setattr(loop, "photometric_distortion", spy)
    monkeypatch.setattr(
        PairNormalize, "images", lambda self, image: seen.append(image) or image.float()
    )
    recipe = dict(TINY["recipes"]["tiny"], iterations=3, val_every=3, augment="opencd")
    params = load_params(write_params(tmp_path, prepared, {"recipes": {"tiny": recipe}}))
    (spec,) = params.runs()
    train_run(params, spec, tmp_path / "run", tracking=False)
    assert [(tuple(i), tuple(c)) for i, c, _ in applied] == [((4, 2, 3, 32, 32), (4, 2, 7))] * 3
    # the first three images normalised are the training batches (validation comes after)
    for (_, _, out), image in zip(applied, seen[:3], strict=True):
        assert torch.equal(out, image)


def test_metrics_file_protocols(tmp_path: Path, prepared: Path, uninterrupted: Path) -> None:
    params = tiny_params(tmp_path, prepared)
    (spec,) = params.runs()
    metrics = evaluate_run(params, spec, uninterrupted, tmp_path / "reports", tracking=False)
    on_disk = json.loads((tmp_path / "reports" / "runs" / f"{RUN}.json").read_text())
    assert on_disk == metrics
    headline = json.loads((tmp_path / "reports" / "metrics" / f"{RUN}.json").read_text())
    assert headline == {
        protocol: {
            figure: round(metrics[f"{protocol}/{figure}"] * 100, 2) for figure in ("f1", "iou")
        }
        for protocol in ("val_threshold", "fixed")
    }
    pr = pd.read_csv(tmp_path / "reports" / "pr" / f"{RUN}.csv")
    assert list(pr.columns) == ["threshold", "recall", "precision", "f1"] and len(pr) > 2
    curves = json.loads((tmp_path / "reports" / "curves" / f"{RUN}.json").read_text())
    for rate in ("recall", "precision", "f1"):  # the plot tables are in percent, as the reports
        assert list(pr[rate]) == pytest.approx([100 * v for v in curves["test"][rate]])
    assert list(pr["threshold"]) == pytest.approx(curves["test"]["threshold"])
    history = json.loads((uninterrupted / "summary.json").read_text())["history"]
    training = pd.read_csv(tmp_path / "reports" / "training" / f"{RUN}.csv")
    assert list(training["step"]) == [r["step"] for r in history if "train/loss" in r]
    assert list(training["loss"]) == pytest.approx(
        [r["train/loss"] for r in history if "train/loss" in r]
    )
    selection = pd.read_csv(tmp_path / "reports" / "selection" / f"{RUN}.csv")
    assert list(selection["selection"]) == pytest.approx(
        [100 * r["val/selection"] for r in history if "val/selection" in r]
    )
    assert list(selection["max_f1_threshold"]) == pytest.approx(
        [r["val/max_f1_threshold"] for r in history if "val/max_f1_threshold" in r]
    )
    pixels = 4 * 64 * 64
    for protocol in ("fixed", "val_threshold", "test_best_optimistic"):
        counts = [metrics[f"{protocol}/{k}"] for k in ("tp", "fp", "fn", "tn")]
        assert sum(counts) == pixels
        tp, fp, fn, _ = counts
        assert metrics[f"{protocol}/f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert metrics["fixed/threshold"] == 0.5  # bce arm: a probability
    assert metrics["test_best_optimistic/f1"] >= metrics["val_threshold/f1"]
    assert metrics["test_best_optimistic/f1"] >= metrics["fixed/f1"]
    assert metrics["selection_split"] == "val"
    assert metrics["score_kind"] == "probability"
    curve = json.loads((tmp_path / "reports" / "curves" / f"{RUN}.json").read_text())
    assert len(curve["test"]["precision"]) == len(curve["test"]["threshold"]) > 100
    # The thumbnails: arrays of the first test pairs, no picture (the report draws them).
    assert not list((tmp_path / "reports" / "predictions").glob("**/*.png"))
    with np.load(tmp_path / "reports" / "predictions" / f"{RUN}.npz") as stored:
        arrays = {key: stored[key] for key in stored.files}
    shapes = {key: (value.dtype, value.shape) for key, value in arrays.items()}
    assert shapes == {
        "names": (np.dtype("<U9"), (4,)),
        "image_a": (np.uint8, (4, 64, 64, 3)),
        "image_b": (np.uint8, (4, 64, 64, 3)),
        "label": (np.uint8, (4, 64, 64)),
        "prediction": (np.uint8, (4, 64, 64)),
        "score": (np.float16, (4, 64, 64)),
        "threshold": (np.float64, ()),
        "score_kind": (np.dtype("<U11"), ()),
    }
    assert str(arrays["score_kind"]) == "probability"
    threshold = float(arrays["threshold"])
    assert round(threshold, 6) == metrics["thumbnail_threshold"]
    assert metrics["thumbnail_threshold"] == metrics["val_threshold/threshold"]
    split = prepared / "synthetic" / "test"
    for i, name in enumerate(arrays["names"]):
        assert np.array_equal(
            arrays["image_a"][i], np.asarray(Image.open(split / "A" / f"{name}.png"))
        )
        assert np.array_equal(
            arrays["image_b"][i], np.asarray(Image.open(split / "B" / f"{name}.png"))
        )
        assert np.array_equal(
            arrays["label"][i] * 255, np.asarray(Image.open(split / "label" / f"{name}.png"))
        )
    score = arrays["score"].astype(np.float32)
    clear = np.abs(score - threshold) > 1e-2  # away from float16's rounding of the score
    assert np.array_equal(arrays["prediction"][clear], (score > threshold)[clear])
    assert [r["step"] for r in curve["training"] if "val/f1" in r] == [3, 6]
    # Per-image counts (the report's bootstrap) add up to the pooled counts of every protocol.
    per_image = pd.read_csv(tmp_path / "reports" / "per_image" / f"{RUN}.csv")
    assert list(per_image["name"]) == list(arrays["names"]) and len(per_image) == 4
    positives = per_image["fixed/tp"] + per_image["fixed/fn"]
    assert list(positives) == [int(label.sum()) for label in arrays["label"]]
    for protocol in ("fixed", "val_threshold", "test_best_optimistic"):
        for k in ("tp", "fp", "fn", "tn"):
            assert per_image[f"{protocol}/{k}"].sum() == metrics[f"{protocol}/{k}"], protocol


def test_report_of_a_real_evaluation(tmp_path: Path, prepared: Path, uninterrupted: Path) -> None:
    """evaluate -> report on a real (tiny) run: tables and figures, the run's row inside."""
    from benchmark.reporting.report import write_report

    params = tiny_params(tmp_path, prepared)
    (spec,) = params.runs()
    reports = tmp_path / "reports"
    evaluate_run(params, spec, uninterrupted, reports, tracking=False)
    repo = Path(__file__).resolve().parents[1]
    report = write_report(reports, repo / "references.yaml", resamples=50, tracking=False)
    row = report.summary.set_index("protocol").loc["val_threshold"]
    metrics = json.loads((reports / "runs" / f"{RUN}.json").read_text())
    assert row["f1"] == pytest.approx(100 * metrics["val_threshold/f1"])
    assert row["f1_ci_low"] <= row["f1"] <= row["f1_ci_high"]
    assert f"| {row['f1']:.2f} " in (reports / "comparison.md").read_text()
    names = {p.name for p in report.figures}
    assert {"f1-synthetic.png", "pr-synthetic.png", "training-synthetic.png",
            "qualitative-synthetic.png"} <= names  # fmt: skip


def test_mlflow_records_params_curves_test_metrics_and_artifacts(
    tmp_path: Path, prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    (tmp_path / ".git").mkdir()  # a repository root: the default URI lives here
    monkeypatch.chdir(tmp_path)
    params = tiny_params(tmp_path, prepared)
    (spec,) = params.runs()
    out = tmp_path / "checkpoints" / RUN
    train_run(params, spec, out)
    evaluate_run(params, spec, out, tmp_path / "reports")

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("cdbench-synthetic")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == RUN and run.info.status == "FINISHED"
    assert run.data.params["recipe.optimizer.lr"] == "0.001"
    assert run.data.params["loss"] == "bce"
    for tag in ("model", "loss", "dataset", "recipe", "seed", "git_commit", "dvc_stage"):
        assert tag in run.data.tags, tag
    assert run.data.tags["dvc_stage"] == f"train@{RUN}"
    assert len(client.get_metric_history(run.info.run_id, "val/f1")) == 2  # steps 3 and 6
    # train metrics at every validation (3, 6) and every end of epoch (4 batches an epoch)
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert sorted(steps) == [3, 4, 6]
    assert "test/fixed/f1" in run.data.metrics
    assert "test/val_threshold/f1" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "evaluation"} <= artifacts
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation/predictions")}
    assert logged == {f"evaluation/predictions/{RUN}.npz"}  # arrays; the report draws them
    assert (tmp_path / "mlruns").is_dir()  # artifacts in the repository, not elsewhere


@pytest.mark.slow
def test_kill_9_then_rerun_ends_like_an_uninterrupted_run(
    tmp_path: Path, prepared: Path, uninterrupted: Path
) -> None:
    params_file = write_params(tmp_path, prepared)
    command = [
        str(BIN / "cdbench"), "--params", str(params_file), "train", RUN,
        "--no-tracking", "--checkpoints", str(tmp_path / "checkpoints"),
    ]  # fmt: skip
    last = tmp_path / "checkpoints" / RUN / "last.pt"
    process = subprocess.Popen(command, cwd=tmp_path)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if last.exists() and checkpoint.load(last)["step"] >= 2:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = checkpoint.load(last)["step"]
    assert killed_at < 6

    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"resumed at {killed_at}" in done.stdout
    assert_same_training(uninterrupted, last.parent)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_with_ddp(tmp_path: Path, prepared: Path) -> None:
    params_file = write_params(tmp_path, prepared)
    command = [
        str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2",
        "-m", "benchmark", "--params", str(params_file), "train", RUN,
        "--no-tracking", "--checkpoints", str(tmp_path / "checkpoints"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained bsfnet-bce-synthetic: 6 steps") == 2  # both ranks
    out = tmp_path / "checkpoints" / RUN
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6
    last = checkpoint.load(out / "last.pt")
    assert last["step"] == 6
    assert all(torch.isfinite(t).all() for t in last["model_and_loss"].values())
    assert [h["step"] for h in last["history"]] == [3, 4, 6]  # validations and epoch ends
    assert all(0 <= h["val/f1"] <= 1 for h in last["history"] if "val/f1" in h)
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "summary.json"]


# --- non-finite losses, MLflow outages ------------------------------------------------------


def test_a_non_finite_loss_stops_at_its_step_and_keeps_the_last_finite_checkpoint(
    tmp_path: Path, prepared: Path, uninterrupted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = tiny_params(tmp_path, prepared)
    (spec,) = params.runs()
    out = tmp_path / "checkpoints" / RUN
    original = Trainable.forward
    calls = {"n": 0}

    def nan_from_step_3(self: Trainable, *args: Any) -> Any:
        calls["n"] += 1
        loss, parts = original(self, *args)
        return (loss * float("nan"), parts) if calls["n"] >= 3 else (loss, parts)

    monkeypatch.setattr(Trainable, "forward", nan_from_step_3)
    with pytest.raises(CdbenchError, match=r"loss was nan at step 3") as raised:
        train_run(params, spec, out, tracking=False)
    assert "recipes.tiny.optimizer.lr = 0.001" in str(raised.value)
    assert "weight_decay" in str(raised.value)
    assert "of step 2 (finite) is kept" in str(raised.value)
    last = checkpoint.load(out / "last.pt")
    assert last["step"] == 2  # checkpoint_every 2: the step-3 weights were never saved
    assert checkpoint.finite_weights(last["model_and_loss"])
    assert not (out / "best.pt").exists() and not (out / "summary.json").exists()

    # Resumed from that checkpoint, the run ends exactly like one never interrupted.
    monkeypatch.setattr(Trainable, "forward", original)
    result = train_run(params, spec, out, tracking=False)
    assert result.resumed_from == 2 and result.steps == 6
    assert_same_training(uninterrupted, out)


def test_a_diverging_learning_rate_never_writes_a_non_finite_last_pt(
    tmp_path: Path, prepared: Path
) -> None:
    # lr 1e30 is a finite, accepted setting; the first update throws the weights to about
    # 1e30 (still finite, saved at step 1) and the loss of step 2 is NaN.
    recipe = dict(TINY["recipes"]["tiny"], optimizer={"name": "adam", "lr": "1e30"})
    runtime = dict(TINY["runtime"], checkpoint_every=1)
    changes = {"recipes": {"tiny": recipe}, "runtime": runtime}
    params = load_params(write_params(tmp_path, prepared, changes))
    (spec,) = params.runs()
    out = tmp_path / "checkpoints" / RUN
    for _ in range(2):  # a rerun resumes the finite step-1 checkpoint and stops again
        with pytest.raises(CdbenchError, match=r"at step 2.*optimizer\.lr = 1e\+30"):
            train_run(params, spec, out, tracking=False)
        last = checkpoint.load(out / "last.pt")
        assert last["step"] == 1
        assert checkpoint.finite_weights(last["model_and_loss"])


def test_a_non_finite_last_pt_is_not_resumed(
    tmp_path: Path, prepared: Path, uninterrupted: Path
) -> None:
    out = tmp_path / "checkpoints" / RUN
    shutil.copytree(uninterrupted, out)
    state = checkpoint.load(out / "last.pt")
    name = next(k for k, v in state["model_and_loss"].items() if v.is_floating_point())
    state["model_and_loss"][name].fill_(float("nan"))
    state["step"] = 4
    checkpoint.save_atomic({k: v for k, v in state.items() if k != "format"}, out / "last.pt")
    params = tiny_params(tmp_path, prepared)
    (spec,) = params.runs()
    with pytest.raises(CdbenchError, match=r"last\.pt: holds non-finite weights"):
        train_run(params, spec, out, tracking=False)


def test_training_survives_an_mlflow_outage_and_logs_the_points_later(
    tmp_path: Path, prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

    from benchmark.tracking import recorder

    (tmp_path / ".git").mkdir()  # a repository root: the default URI lives here
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(recorder, "RETRY_DELAYS_S", (0.0,))
    real_log_batch = mlflow.MlflowClient.log_batch
    down = {"on": True}

    def locked_while_down(self: Any, *args: Any, **kwargs: Any) -> Any:
        if down["on"]:
            raise MlflowException("database is locked", error_code=TEMPORARILY_UNAVAILABLE)
        return real_log_batch(self, *args, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "log_batch", locked_while_down)
    params = tiny_params(tmp_path, prepared)
    (spec,) = params.runs()
    out = tmp_path / "checkpoints" / RUN
    result = train_run(params, spec, out)  # every param and metric fails to log
    assert result.steps == 6
    pending = checkpoint.load(out / "last.pt")["mlflow_pending"]
    assert {m[3] for m in pending["metrics"]} == {3, 4, 6}
    assert any(p[0] == "recipe.optimizer.lr" for p in pending["params"])

    down["on"] = False
    again = train_run(params, spec, out)  # the finished run: logs what is pending
    assert again.mlflow_run_id == result.mlflow_run_id
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["recipe.optimizer.lr"] == "0.001"
    steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
    assert steps == [3, 4, 6]  # each point once
    assert checkpoint.load(out / "last.pt")["mlflow_pending"]["metrics"] == []


def test_loop_uses_the_fused_optimizer_and_compiles_when_asked(
    params_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = load_params(params_path)
    compiled: list[torch.nn.Module] = []

    def fake_compile(module: torch.nn.Module) -> torch.nn.Module:
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    runtime = runtime_config(
        device="cpu",
        workers=0,
        system_metrics=False,
        progress=False,
        fused_optimizer=True,
        compile=True,
    )
    (spec,) = params.runs()
    train_run(params, spec, tmp_path / "run", runtime, tracking=False)
    assert len(compiled) == 1 and hasattr(compiled[0], "loss")  # the model and its loss
    state = checkpoint.load(tmp_path / "run" / "last.pt")
    assert state["optimizer"]["param_groups"][0]["fused"] is True
    plain = runtime_config(device="cpu", workers=0, system_metrics=False, progress=False)
    train_run(params, spec, tmp_path / "plain", plain, tracking=False)
    state = checkpoint.load(tmp_path / "plain" / "last.pt")
    assert not state["optimizer"]["param_groups"][0]["fused"]
