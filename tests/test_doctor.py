"""`cdbench doctor` (benchmark/doctor.py): one line per piece a run needs, the missing ones
with their fix, exit status 1 only when something the chosen experiments need is missing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.doctor import MISSING, NOTE, OK, check_dataset, check_extractor, check_mlflow
from benchmark.models import weights
from tests.conftest import write_repo_params


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty repository (a .dvc folder) with params.yaml pointing at its own data folders,
    and the synthetic dataset prepared (its manifest)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dvc").mkdir()
    folders = {"raw_dir": "data/raw", "prepared_dir": "data/prepared", "weights_dir": "w"}
    write_repo_params(tmp_path / "params.yaml", data=folders, runtime={"device": "auto"})
    synthetic = tmp_path / "data" / "prepared" / "synthetic"
    synthetic.mkdir(parents=True)
    (synthetic / "manifest.json").write_text(json.dumps({"splits": {}}))
    return tmp_path


def test_the_demo_needs_nothing_more_and_says_so(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", "--dataset", "synthetic"]) == 0
    out = capsys.readouterr().out
    assert "4 experiment(s)" in out and "bsfnet-sisb-synthetic" in out
    assert "ok       dataset synthetic: prepared in data/prepared/synthetic" in out
    assert "weights" not in out  # the demo recipe is not pretrained
    assert "ok       DVC: dvc " in out
    assert out.rstrip().endswith("everything needed is here")


def test_missing_pieces_fail_with_their_fix(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("benchmark.doctor.shutil.which", lambda tool: None)
    assert main(["doctor", "--experiment", "bsfnet-sisb-cdd"]) == 1
    out = capsys.readouterr().out
    assert "MISSING  dataset cdd: not prepared (data/prepared/cdd)" in out
    assert "fix: `dvc repro download@cdd`" in out
    assert "MISSING  weights (bsfnet): w/resnet50-0676ba61.pth not found" in out
    assert "fix: `dvc repro weights`" in out
    assert "MISSING  RAR extractor: neither bsdtar nor unar found; cdd ships as RAR" in out
    assert "ifn" not in out.split("\n", 1)[1]  # only what bsfnet-sisb-cdd needs
    assert out.rstrip().endswith("3 missing")

    assert main(["doctor", "--experiment", "no-such-run"]) == 1
    assert "unknown experiment 'no-such-run'" in capsys.readouterr().err


def test_weights_are_checked_against_the_hash_in_their_name(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    content = b"resnet weights"
    prefix = hashlib.sha256(content).hexdigest()[:8]
    planted = weights.WeightFile(url=f"https://example.org/resnet50-{prefix}.pth", source="test")
    monkeypatch.setattr(weights, "RESNET50", planted)
    (repo / "w").mkdir()
    (repo / "w" / planted.name).write_bytes(content)
    main(["doctor", "--experiment", "bsfnet-sisb-cdd"])
    assert f"ok       weights (bsfnet): w/{planted.name} (SHA-256 {prefix}...)" in (
        capsys.readouterr().out
    )

    (repo / "w" / planted.name).write_bytes(b"damaged")
    main(["doctor", "--experiment", "bsfnet-sisb-cdd"])
    out = capsys.readouterr().out
    assert f"MISSING  weights (bsfnet): w/{planted.name}: SHA-256 does not start with" in out
    assert "fix: delete it, then `dvc repro weights`" in out


def test_datasets_extractor_and_store_states(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmark.config import load_params

    params = load_params("params.yaml")
    raw = repo / "data" / "raw" / "levir-cd"
    raw.mkdir(parents=True)
    for name in ("train.zip", "val.zip"):
        (raw / name).write_bytes(b"")
    missing = check_dataset(params, "levir-cd")
    assert missing.status == MISSING and "test.zip not in" in missing.detail
    (raw / "test.zip").write_bytes(b"")
    assert check_dataset(params, "levir-cd").status == OK  # downloaded: the pipeline prepares it

    monkeypatch.setattr("benchmark.doctor.shutil.which", lambda tool: None)
    assert check_extractor(params, ["levir-cd"]).status == NOTE  # zips need no RAR tool
    assert check_extractor(params, ["cdd"]).status == MISSING

    assert check_mlflow(repo).status == OK  # no database yet: the first run creates it
    (repo / "mlflow.db").write_text("not a database")
    broken = check_mlflow(repo)
    assert broken.status == MISSING and "is not an MLflow database" in broken.detail


def test_disk_needed_counts_what_is_still_to_download_prepare_and_train(repo: Path) -> None:
    from benchmark.config import load_params
    from benchmark.data.datasets import DATASETS
    from benchmark.doctor import PREPARE_FACTOR, RUN_BYTES, diagnose, disk_needed

    params = load_params("params.yaml")
    archives = {a.filename: a.size or 0 for a in DATASETS["levir-cd"].archives}
    total = sum(archives.values())
    assert disk_needed(params, ["levir-cd"], 2) == PREPARE_FACTOR * total + 2 * RUN_BYTES
    raw = repo / "data" / "raw" / "levir-cd"
    raw.mkdir(parents=True)
    (raw / "test.zip").write_bytes(b"")
    assert disk_needed(params, ["levir-cd"], 0) == PREPARE_FACTOR * total - archives["test.zip"]
    assert disk_needed(params, ["synthetic"], 0) == 0  # prepared already

    # Runs trained already (their summary.json) need no more room.
    demo = [name for name, e in params.experiments.items() if e.dataset == "synthetic"]
    (disk,) = [c for c in diagnose(params, demo, repo) if c.name == "disk"]
    assert f"{len(demo) * RUN_BYTES / 2**30:.1f} GiB needed" in disk.detail
    (repo / "checkpoints" / demo[0]).mkdir(parents=True)
    (repo / "checkpoints" / demo[0] / "summary.json").write_text("{}")
    (disk,) = [c for c in diagnose(params, demo, repo) if c.name == "disk"]
    assert f"{(len(demo) - 1) * RUN_BYTES / 2**30:.1f} GiB needed" in disk.detail
