"""`cdbench evaluate` refuses a checkpoint trained under another configuration than the
current one (benchmark/evaluation/evaluate.py), unless `--allow-stale-checkpoint`, and then
every record says so: the metrics file, the MLflow tags, the report and `cdbench check`."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmark import checkpoint, run
from benchmark.cli import main
from benchmark.config import RunSpec, load_params
from benchmark.evaluation.evaluate import stale_checkpoint
from benchmark.training.loop import train_run
from tests.data.tiny import RUN, TINY, write_params

REPO = Path(__file__).resolve().parents[1]


def with_recipe(folder: Path, data: Path, **changes: object) -> Path:
    """params.yaml in `folder` (created): the tiny run, its recipe changed by `changes`."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_params(
        folder, data, {"recipes": {"tiny": dict(TINY["recipes"]["tiny"], **changes)}}
    )


def test_only_the_settings_that_change_the_digest_are_named(tmp_path: Path) -> None:
    data = tmp_path / "prepared"  # no dataset needed: only the configurations are compared
    old = load_params(with_recipe(tmp_path / "old", data))
    (spec,) = old.runs()
    trained = run.resolved_config(old, spec, old.runtime)
    best = {"digest": run.digest(trained), "config": trained}
    assert stale_checkpoint(best, trained) is None
    # Another device and more workers do not change the result: still the same configuration.
    elsewhere = {**trained, "runtime": {**trained["runtime"], "device": "cuda", "workers": 7}}
    assert stale_checkpoint(best, elsewhere) is None

    new = load_params(with_recipe(tmp_path / "new", data, iterations=9, crop=64))
    now = {**run.resolved_config(new, spec, new.runtime), "runtime": elsewhere["runtime"]}
    stale = stale_checkpoint(best, now)
    assert stale is not None
    assert stale["checkpoint_digest"] == best["digest"]
    assert stale["current_digest"] == run.digest(now) != best["digest"]
    assert stale["differences"] == ["recipe.crop: 32 -> 64", "recipe.iterations: 6 -> 9"]

    # The digest includes the seed: a checkpoint is stale for another seed's configuration.
    other_seed = run.resolved_config(old, RunSpec(spec.experiment, 1, spec.name), old.runtime)
    assert stale_checkpoint(best, other_seed)["differences"] == ["seed: 0 -> 1"]  # type: ignore[index]


@pytest.mark.slow
def test_a_stale_checkpoint_is_refused_and_the_override_recorded_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    from benchmark.data.synth import generate_synthetic
    from tests.conftest import synth_config

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    data = tmp_path / "prepared"
    generate_synthetic(data / "synthetic", synth_config(size=64, train=16, val=4, test=4))
    trained_params = with_recipe(tmp_path / "trained", data)
    params = load_params(trained_params)
    (spec,) = params.runs()
    checkpoints = tmp_path / "checkpoints"
    train_run(params, spec, checkpoints / RUN, tracking=True)
    digest = checkpoint.load(checkpoints / RUN / "best.pt")["digest"]
    reports = tmp_path / "reports"
    evaluate = ["evaluate", RUN, "--checkpoints", str(checkpoints), "--reports", str(reports)]

    # Under the configuration it was trained with: scored, and said to be current.
    assert main(["--params", str(trained_params), *evaluate]) == 0
    metrics = json.loads((reports / "runs" / f"{RUN}.json").read_text())
    assert metrics["config_digest"] == digest and metrics["stale_checkpoint"] is None
    capsys.readouterr()

    # params.yaml changed since (another number of iterations): refused, nothing written.
    (reports / "metrics" / f"{RUN}.json").unlink()
    changed_params = with_recipe(tmp_path / "changed", data, iterations=3)
    assert main(["--params", str(changed_params), *evaluate]) == 1
    err = capsys.readouterr().err
    assert f"{checkpoints / RUN / 'best.pt'}: trained under another configuration" in err
    assert f"checkpoint digest {digest[:12]}" in err and "recipe.iterations: 6 -> 3" in err
    assert f"`dvc repro train@{RUN}`" in err and "--allow-stale-checkpoint" in err
    assert not (reports / "metrics" / f"{RUN}.json").exists()

    # Overridden: scored, and the metrics file, MLflow, check and report all name it.
    assert main(["--params", str(changed_params), *evaluate, "--allow-stale-checkpoint"]) == 0
    assert "WARNING: scored from a stale checkpoint" in capsys.readouterr().err
    metrics = json.loads((reports / "runs" / f"{RUN}.json").read_text())
    changed = load_params(changed_params)
    current = run.digest(run.resolved_config(changed, spec, changed.runtime))
    assert metrics["config_digest"] == digest
    assert metrics["stale_checkpoint"] == {
        "checkpoint_digest": digest,
        "current_digest": current,
        "differences": ["recipe.iterations: 6 -> 3"],
    }
    (found,) = mlflow.search_runs(experiment_names=["cdbench-synthetic"]).to_dict("records")
    assert found["tags.stale_checkpoint"] == "true"
    assert found["tags.checkpoint_digest"] == digest
    assert found["tags.current_config_digest"] == current

    references = tmp_path / "references.yaml"
    row = {"model": "bsfnet", "loss": "bce", "dataset": "synthetic", "protocol": "fixed"}
    references.write_text(
        yaml.safe_dump({"demo": [{**row, "values": {"f1": 1.0}, "tolerance": 100.0}]})
    )
    check = ["--params", str(changed_params), "check", "--reports", str(reports)]
    check += ["--references", str(references), "--profile", "demo"]
    assert main(check) == 1
    out = capsys.readouterr().out
    assert "stale checkpoint (--allow-stale-checkpoint): bsfnet-bce-synthetic" in out
    assert main([*check, "--allow-stale-checkpoint"]) == 0
    report = ["--params", str(changed_params), "report", "--reports", str(reports)]
    report += ["--references", str(references), "--resamples", "20", "--no-tracking"]
    assert main(report) == 0
    table = pd.read_csv(reports / "comparison.csv", keep_default_na=False)
    assert set(table["stale_runs"]) == {RUN}
    assert "†" in (reports / "comparison.md").read_text()
