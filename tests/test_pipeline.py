"""The DVC pipeline itself: `dvc repro` runs the synth stage, pins its output, and re-runs only
what changed. Runs in a scratch copy of the repository so the real `data/` is never touched.

End-to-end: the DVC pipeline across its stages, not one module of benchmark/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import repo_params

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def small_params(seed: int) -> str:
    """The repository's params.yaml with a 6/2/2-pair synthetic dataset of 64 x 64 images."""
    synth = {"seed": seed, "size": 64, "train": 6, "val": 2, "test": 2}
    return yaml.safe_dump(repo_params(synth=synth), sort_keys=False)


def _run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture
def scratch_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(
        REPO / "benchmark", root / "benchmark", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "params.yaml").write_text(small_params(0))
    _run(["git", "init", "-q"], root)
    _run([str(BIN / "dvc"), "init", "-q"], root)
    return root


def test_dvc_yaml_declares_the_data_stages() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert set(stages["download"]["foreach"]) == {"cdd", "levir-cd"}
    assert set(stages["prepare"]["foreach"]) == {"cdd", "levir-cd"}
    # downloads survive `dvc repro` (archives placed by hand); prepare depends on them
    download_outs = stages["download"]["do"]["outs"][0]
    assert next(iter(download_outs.values()))["persist"] is True
    assert "${data.raw_dir}/${item}" in stages["prepare"]["do"]["deps"]
    assert stages["synth"]["params"] == ["synth"]


@pytest.mark.slow
def test_dvc_repro_synth_runs_pins_and_skips_unchanged(scratch_repo: Path) -> None:
    dvc = str(BIN / "dvc")
    _run([dvc, "repro", "synth"], scratch_repo)
    manifest = json.loads((scratch_repo / "data/prepared/synthetic/manifest.json").read_text())
    assert {s: manifest["splits"][s]["pairs"] for s in ("train", "val", "test")} == {
        "train": 6,
        "val": 2,
        "test": 2,
    }
    lock = yaml.safe_load((scratch_repo / "dvc.lock").read_text())
    outs = lock["stages"]["synth"]["outs"]
    assert outs[0]["path"] == "data/prepared/synthetic" and outs[0]["md5"].endswith(".dir")

    again = _run([dvc, "repro", "synth"], scratch_repo)
    assert "didn't change, skipping" in again

    (scratch_repo / "params.yaml").write_text(small_params(1))
    changed = _run([dvc, "repro", "synth"], scratch_repo)
    assert "Running stage 'synth'" in changed
    new_lock = yaml.safe_load((scratch_repo / "dvc.lock").read_text())
    assert new_lock["stages"]["synth"]["outs"][0]["md5"] != outs[0]["md5"]
