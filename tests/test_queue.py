"""Parallel experiments through DVC's queue record their runs in the one MLflow database of the
real repository (not in the queue's temporary copies, which DVC deletes).

End-to-end: a whole pipeline through DVC's queue, not one module of benchmark/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmark.config import load_params
from benchmark.stages import render_stages
from tests.data.queue_params import PARAMS, RUNS

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.mark.slow
def test_two_parallel_queued_experiments_land_in_one_mlflow_database(tmp_path: Path) -> None:
    import mlflow

    root = tmp_path / "repo"
    root.mkdir()
    shutil.copytree(
        REPO / "benchmark", root / "benchmark", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    (root / "dvc.yaml").write_text("stages:\n" + render_stages(load_params(root / "params.yaml")))
    (root / ".gitignore").write_text("/mlflow.db\n/mlflow.db.lock\n/mlruns/\n")
    env = {
        **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t", "OMP_NUM_THREADS": "1",
    }  # fmt: skip
    dvc = str(BIN / "dvc")
    _run(["git", "init", "-q"], root, env)
    _run([dvc, "init", "-q"], root, env)
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-qm", "scratch"], root, env)
    for run in RUNS:
        _run([dvc, "exp", "run", "--queue", f"evaluate@{run}"], root, env)
    _run([dvc, "queue", "start", "-j", "2"], root, env)

    deadline = time.monotonic() + 600
    status = ""
    while time.monotonic() < deadline:
        status = _run([dvc, "queue", "status"], root, env)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    if status.count("Success") != 2:
        names = [line.split()[1] for line in status.splitlines()[1:] if "Failed" in line]
        logs = [_run([dvc, "queue", "logs", name], root, env) for name in names]
        pytest.fail(f"queued experiments failed:\n{status}\n" + "\n".join(logs)[-6000:])

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    experiment = client.get_experiment_by_name("cdbench-synthetic")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(RUNS)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert "test/fixed/f1" in run.data.metrics
        assert run.data.tags["dvc_stage"] == f"train@{run.info.run_name}"
        assert run.data.tags.get("dvc_exp_name")  # set by DVC in the queue's workers
    assert not (root / ".dvc" / "tmp" / "exps" / "mlflow.db").exists()
