"""What the MLflow UI shows of a run (docs/mlflow.md): one tiny run trained, evaluated,
reported and checked through the real code paths, read back with MlflowClient; and the
screenshot script (scripts/mlflow_screenshots.py) on that store, where Chromium is installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmark import checkpoint
from benchmark.evaluation.evaluate import evaluate_run
from benchmark.tracking import headline_links
from benchmark.tracking.glance import (
    COUNT_FIGURES,
    HEADLINE,
    KIND_TAG,
    NOTE_TAG,
    VIEW_TAG,
    headline_view,
    model_name,
)
from benchmark.tracking.verdict import attach_check, latest_report_run
from benchmark.training.loop import train_run
from tests.data.tiny import RUN, TINY, write_params

pytestmark = pytest.mark.slow  # the module's store: a tiny run trained and evaluated

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")


@dataclass(frozen=True)
class Store:
    root: Path  # a repository root holding mlflow.db, checkpoints/ and reports/
    uri: str
    run_id: str
    experiment: str
    seed: int


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A tiny run (6 steps, log_every 1) trained and evaluated into <root>/mlflow.db."""
    from benchmark.config import load_params
    from benchmark.data.synth import generate_synthetic
    from tests.conftest import synth_config

    root = tmp_path_factory.mktemp("ui")
    (root / ".git").mkdir()  # a repository root: the default store lives here
    generate_synthetic(
        root / "prepared" / "synthetic", synth_config(size=64, train=16, val=4, test=4)
    )
    runtime = dict(TINY["runtime"], log_every=1)
    params = load_params(write_params(root, root / "prepared", {"runtime": runtime}))
    (spec,) = params.runs()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = train_run(params, spec, root / "checkpoints" / RUN)
        evaluate_run(params, spec, root / "checkpoints" / RUN, root / "reports")
    assert result.mlflow_run_id
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return Store(root, uri, result.mlflow_run_id, spec.experiment, spec.seed)


def test_dataset_input_carries_the_manifest_digest(store: Store) -> None:
    from mlflow import MlflowClient

    run = MlflowClient(store.uri).get_run(store.run_id)
    (entry,) = run.inputs.dataset_inputs
    manifest = checkpoint.file_sha256(store.root / "prepared" / "synthetic" / "manifest.json")
    assert entry.dataset.name == "synthetic"
    assert entry.dataset.digest == manifest[:36]
    assert json.loads(entry.dataset.profile)["manifest_sha256"] == manifest
    assert {t.key: t.value for t in entry.tags}["mlflow.data.context"] == "train"


def test_source_tags_name_the_command_and_commit(store: Store) -> None:
    from mlflow import MlflowClient

    tags = MlflowClient(store.uri).get_run(store.run_id).data.tags
    assert tags["mlflow.source.name"] == "cdbench train"
    assert tags["mlflow.source.type"] == "LOCAL"
    # tmp_path's .git is no real repository: git_commit says "unknown", so no commit tag
    assert tags["git_commit"] == "unknown" and "mlflow.source.git.commit" not in tags


def test_headline_metrics_and_no_count_metrics(store: Store) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(store.uri)
    metrics = client.get_run(store.run_id).data.metrics
    assert {"f1", "iou", "f1_fixed", "iou_fixed"} <= set(metrics)
    assert not {"f1_whole", "f1_fixed_whole"} & set(metrics)  # synthetic: no whole images
    assert metrics["f1"] == metrics["test/val_threshold/f1"]
    assert metrics["f1_fixed"] == metrics["test/fixed/f1"]
    assert sorted(metrics)[: len(HEADLINE) // 2] == ["f1", "f1_fixed", "iou", "iou_fixed"]
    counts = [k for k in metrics if k.rsplit("/", 1)[-1] in COUNT_FIGURES]
    assert counts == []
    record = json.loads((store.root / "reports" / "runs" / f"{RUN}.json").read_text())
    logged = json.loads(
        Path(client.download_artifacts(store.run_id, "evaluation/counts.json")).read_text()
    )
    assert logged["fixed"]["tp"] == record["fixed/tp"]
    assert logged["val_threshold"]["threshold"] == record["val_threshold/threshold"]


def test_rates_are_logged_in_percent_and_the_records_keep_fractions(store: Store) -> None:
    from mlflow import MlflowClient

    from benchmark.tracking import runs_table

    client = MlflowClient(store.uri)
    summary = json.loads((store.root / "checkpoints" / RUN / "summary.json").read_text())
    validated = {r["step"]: r for r in summary["history"] if "val/max_f1" in r}
    assert validated and all(r["val/max_f1"] > 0 for r in validated.values())  # not 0 == 0
    for key in ("val/f1", "val/max_f1", "val/selection", "val/best_selection"):
        logged = {m.step: m.value for m in client.get_metric_history(store.run_id, key)}
        assert logged == pytest.approx({s: 100 * r[key] for s, r in validated.items()}), key
    key = "val/max_f1_threshold"  # a threshold keeps its unit
    logged = {m.step: m.value for m in client.get_metric_history(store.run_id, key)}
    assert logged == pytest.approx({s: r[key] for s, r in validated.items()})

    record = json.loads((store.root / "reports" / "runs" / f"{RUN}.json").read_text())
    assert record["test_best_optimistic/f1"] > 0
    metrics = client.get_run(store.run_id).data.metrics
    assert metrics["f1"] == pytest.approx(100 * record["val_threshold/f1"])
    assert metrics["test/fixed/threshold"] == record["fixed/threshold"]
    (row,) = runs_table([f"cdbench-{record['dataset']}"], uri=store.uri).to_dict("records")
    for figure in ("f1", "iou", "precision", "recall", "oa", "kappa"):
        key = f"test_best_optimistic/{figure}"
        assert row[f"test/{key}"] == pytest.approx(100 * record[key]), key


def test_training_loss_curve_has_a_point_every_log_every_steps(store: Store) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(store.uri)
    for key in ("train/loss", "train/lr"):
        steps = sorted(m.step for m in client.get_metric_history(store.run_id, key))
        assert steps == [1, 2, 3, 4, 5, 6], key  # log_every 1; each step once
    summary = json.loads((store.root / "checkpoints" / RUN / "summary.json").read_text())
    recorded = [r["step"] for r in summary["history"] if "train/loss" in r]
    assert recorded == [3, 4, 6]  # the history keeps its records (validations, epochs)


def test_selected_model_is_registered_with_the_checkpoint_hash(store: Store) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(store.uri)
    name = model_name(store.experiment, store.seed)
    (version,) = client.search_model_versions(f"name = '{name}'")
    best = store.root / "checkpoints" / RUN / "best.pt"
    assert version.run_id == store.run_id
    assert version.source == best.resolve().as_uri()  # a reference, not a copy
    assert version.tags["checkpoint_sha256"] == checkpoint.file_sha256(best)
    (output,) = client.get_run(store.run_id).outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert (
        model.name == name and model.tags["checkpoint_sha256"] == version.tags["checkpoint_sha256"]
    )


def test_experiment_has_a_description_and_training_kind(store: Store) -> None:
    from mlflow import MlflowClient

    experiment = MlflowClient(store.uri).get_experiment_by_name("cdbench-synthetic")
    assert "f1" in experiment.tags[NOTE_TAG] and "docs/mlflow.md" in experiment.tags[NOTE_TAG]
    assert experiment.tags[KIND_TAG] == "custom_model_development"
    assert experiment.tags[VIEW_TAG] == headline_view(whole=False)  # synthetic: tiles only


def test_cdbench_runs_links_each_experiment_in_its_headline_view(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    from benchmark.cli import main

    experiment = MlflowClient(store.uri).get_experiment_by_name("cdbench-synthetic")
    link = f"http://127.0.0.1:5000/#/experiments/{experiment.experiment_id}/runs?viewStateShareKey="
    assert headline_links(uri=store.uri) == {"cdbench-synthetic": link + "headline"}
    monkeypatch.chdir(store.root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    assert main(["runs", "--dataset", "synthetic"]) == 0
    assert f"cdbench-synthetic: {link}headline" in capsys.readouterr().out


def test_report_run_is_named_by_profile_and_date_and_gets_the_verdict(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from benchmark.reporting.report import write_report

    monkeypatch.chdir(store.root)
    reports = store.root / "reports"
    report = write_report(reports, REPO / "references.yaml", resamples=20)
    found = latest_report_run(reports, store.uri)
    assert found is not None and found[0] == report.mlflow_run_id
    assert found[1].startswith("report-demo-20")
    check_file = store.root / "check.json"
    check_file.write_text('{"passed": false}\n')
    assert attach_check(False, "demo", check_file, reports) == report.mlflow_run_id
    run = MlflowClient(store.uri).get_run(report.mlflow_run_id)
    assert run.data.tags["check.verdict"] == "fail"
    assert run.data.tags["check.profile"] == "demo"
    assert attach_check(True, "demo", check_file, store.root / "elsewhere") is None


@pytest.mark.skipif(
    not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
)
def test_screenshot_script_shows_the_headline_column(store: Store, tmp_path: Path) -> None:
    pytest.importorskip("playwright", reason="playwright is not installed")
    db = tmp_path / "mlflow.db"
    shutil.copy(store.root / "mlflow.db", db)
    out = tmp_path / "shots"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "mlflow_screenshots.py"), "--store", str(db),
         "--out", str(out), "--settle", "5", "--columns", ""],
        check=True, timeout=300,
    )  # fmt: skip
    for view in ("runs-table", "compare", "run-overview", "run-metrics"):
        assert (out / f"{view}.png").stat().st_size > 10_000, view
    table = (out / "runs-table.txt").read_text()
    assert "Dataset" in table and "synthetic (" in table  # the dataset input, with its digest
    # Nothing ticked (--columns ''): the headline view alone shows the headline columns.
    assert {"f1", "iou", "f1_fixed", "iou_fixed"} <= {line.strip() for line in table.splitlines()}
    compare = (out / "compare.txt").read_text().splitlines()
    assert "f1" in compare and "f1_fixed" in compare  # the headline rows of the metrics table
    assert compare.index("f1") < min(i for i, line in enumerate(compare) if "test/" in line)
    overview = (out / "run-overview.txt").read_text()
    assert "cdbench train" in overview and model_name(store.experiment, store.seed) in overview
