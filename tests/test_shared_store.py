"""Runs from several machines in one place: a shared MLflow tracking server and a DVC remote.

Two "machines" are two processes, each in its own workspace (its own git repository), that
log into one `mlflow server` through `MLFLOW_TRACKING_URI`. The server runs with a SQLite
backend always, and with a PostgreSQL backend (started here with `initdb` + `pg_ctl`) when
PostgreSQL's binaries and the psycopg2 driver are installed. The DVC remote is a local folder:
one workspace pushes a stage's output, a clone pulls it.

End-to-end: whole workspaces, a server and a remote, not one module of benchmark/.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from mlflow import MlflowClient

from benchmark.tracking import format_runs_table, runs_table

# One pytest-xdist worker runs the tests that start servers on a free port (here and the
# one-node SLURM of test_launch.py), so no two of them pick the same port.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("servers")]

EXPERIMENT = "cdbench-synthetic"
SERVER_START_TIMEOUT_S = 400.0
"""`mlflow server` creates its schema (every alembic migration) before it answers."""

MACHINE = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from benchmark.tracking import RunTracker

    machine, f1 = sys.argv[1], float(sys.argv[2])
    Path("config.yaml").write_text(f"machine: {machine}\\n")
    tags = {"model": "bsfnet", "loss": "sisb", "dataset": "synthetic", "seed": machine[-1]}
    with RunTracker(
        experiment="cdbench-synthetic", run_name=f"bsfnet-sisb-{machine}", tags=tags
    ) as run:
        run.log_params({"recipe": {"optimizer": {"lr": 0.001}}, "machine": machine})
        for step in (1, 2):
            run.log_metrics({"train/loss": 1.0 / step}, step=step)
        run.log_metrics({"test/f1": f1})
        run.log_artifact(Path("config.yaml"))
    print(f"run_id={run.run_id}")
    """
)
"""What each machine runs: one tracked run with params, a metric history, a test metric and
an artifact, through `benchmark.tracking.RunTracker` with the URI from the environment."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process started with `start_new_session=True` and everything it started."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@contextmanager
def mlflow_server(backend: str, folder: Path) -> Iterator[tuple[str, Path]]:
    """`mlflow server` on a free local port over the backend store URI `backend`, with its
    artifacts in `folder/artifacts`; yields (tracking URI, artifacts folder)."""
    artifacts = folder / "artifacts"
    artifacts.mkdir(parents=True)
    port = _free_port()
    log = folder / "mlflow-server.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "mlflow", "server"),
                *("--backend-store-uri", backend),
                *("--artifacts-destination", str(artifacts)),
                *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
            ],
            cwd=folder,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not _healthy(uri):
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited ({process.returncode}):\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server not up in {SERVER_START_TIMEOUT_S} s:\n{log.read_text()}"
                )
            time.sleep(1)
        yield uri, artifacts
    finally:
        _stop(process)


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _postgres_binaries() -> tuple[str, str] | None:
    """(initdb, pg_ctl) from PATH or Debian's /usr/lib/postgresql/<version>/bin, or None."""
    found = (shutil.which("initdb"), shutil.which("pg_ctl"))
    if found[0] and found[1]:
        return found[0], found[1]
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return str(folder / "initdb"), str(folder / "pg_ctl")
    return None


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A PostgreSQL cluster in a temporary folder on a free port, with an empty database
    `mlflow`; yields its SQLAlchemy URI (`postgresql+psycopg2://...`). PostgreSQL refuses to
    run as root, so as root it runs as `nobody` (through `runuser`)."""
    binaries = _postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl on PATH or under /usr/lib)")
    psycopg2 = pytest.importorskip(
        "psycopg2", reason="the psycopg2 driver is not installed: pip install '.[server]'"
    )
    initdb, pg_ctl = binaries
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="cdbench-pg-"))
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            shutil.rmtree(folder)
            pytest.skip("running as root and no runuser to start PostgreSQL as another user")
        as_user = [runuser, "-u", "nobody", "--"]
        shutil.chown(folder, user="nobody")
    data = folder / "data"
    port = _free_port()
    initialise = [initdb, "-D", str(data), "-U", "cdbench", "--auth=trust"]
    subprocess.run([*as_user, *initialise], check=True, capture_output=True, timeout=300)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    start = [pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-o", options, "-w", "start"]
    subprocess.run([*as_user, *start], check=True, capture_output=True, timeout=300)
    try:
        connection = psycopg2.connect(
            host="127.0.0.1", port=port, user="cdbench", dbname="postgres"
        )
        connection.autocommit = True
        connection.cursor().execute("CREATE DATABASE mlflow")
        connection.close()
        yield f"postgresql+psycopg2://cdbench@127.0.0.1:{port}/mlflow"
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(folder, ignore_errors=True)


def _workspace(root: Path) -> Path:
    """A tiny project of its own: a git repository (so that, were the URI ignored, runs would
    land in its own `mlflow.db`)."""
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def _log_from_two_machines(uri: str, tmp_path: Path) -> dict[str, str]:
    """Run `MACHINE` in two workspaces at once, both pointed at `uri`; {machine: run id}."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    f1 = {"m1": "0.25", "m2": "0.75"}
    started = {
        machine: subprocess.Popen(
            [sys.executable, "-c", MACHINE, machine, f1[machine]],
            cwd=_workspace(tmp_path / machine),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for machine in f1
    }
    run_ids = {}
    for machine, process in started.items():
        out, err = process.communicate(timeout=400)
        assert process.returncode == 0, f"{machine} failed:\n{err}"
        (line,) = [line for line in out.splitlines() if line.startswith("run_id=")]
        run_ids[machine] = line.removeprefix("run_id=")
    return run_ids


def _check_one_store(uri: str, artifacts: Path, tmp_path: Path) -> None:
    run_ids = _log_from_two_machines(uri, tmp_path)
    assert run_ids["m1"] != run_ids["m2"]

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    for machine, f1 in (("m1", 0.25), ("m2", 0.75)):
        run = client.get_run(run_ids[machine])
        assert run.info.experiment_id == experiment.experiment_id
        assert run.info.status == "FINISHED"
        assert run.data.params["machine"] == machine
        assert run.data.params["recipe.optimizer.lr"] == "0.001"
        assert run.data.metrics["test/f1"] == pytest.approx(f1)
        history = client.get_metric_history(run_ids[machine], "train/loss")
        assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5)]
        assert [a.path for a in client.list_artifacts(run_ids[machine])] == ["config.yaml"]
        # Artifacts go through the server into its own store, not the machine's workspace.
        stored = artifacts / experiment.experiment_id / run_ids[machine] / "artifacts"
        assert (stored / "config.yaml").read_text() == f"machine: {machine}\n"
        workspace = tmp_path / machine
        assert not (workspace / "mlflow.db").exists()
        assert not (workspace / "mlflow.db.lock").exists()
        assert not (workspace / "mlruns").exists()

    table = runs_table([EXPERIMENT], uri=uri)
    assert list(table["run_name"]) == ["bsfnet-sisb-m1", "bsfnet-sisb-m2"]
    assert list(table["test/f1"]) == pytest.approx([0.25, 0.75])
    assert list(table["seed"]) == ["1", "2"]
    text = format_runs_table(table)
    assert "bsfnet-sisb-m1" in text and "bsfnet-sisb-m2" in text


def test_two_machines_log_into_one_server_with_a_sqlite_backend(tmp_path: Path) -> None:
    server = tmp_path / "server"
    server.mkdir()
    with mlflow_server(f"sqlite:///{server / 'mlflow.db'}", server) as (uri, artifacts):
        _check_one_store(uri, artifacts, tmp_path)


def test_two_machines_log_into_one_server_with_a_postgresql_backend(
    postgres: str, tmp_path: Path
) -> None:
    server = tmp_path / "server"
    server.mkdir()
    with mlflow_server(postgres, server) as (uri, artifacts):
        _check_one_store(uri, artifacts, tmp_path)


# --- the DVC remote ------------------------------------------------------------------------

STAGE = """\
stages:
  train:
    cmd: mkdir -p checkpoints/run && echo "weights of run" > checkpoints/run/last.pt
    outs:
      - checkpoints/run:
          persist: true
"""
"""A stage shaped like `train@<run>`: a persisted checkpoint folder, cached by DVC."""


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(command)} in {cwd}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_a_checkpoint_pushed_from_one_workspace_is_pulled_in_another(tmp_path: Path) -> None:
    dvc = str(Path(sys.executable).parent / "dvc")
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
    }
    remote = tmp_path / "remote"
    first = tmp_path / "machine1"
    first.mkdir()
    _run(["git", "init", "-q"], first, env)
    _run([dvc, "init", "-q"], first, env)
    (first / "dvc.yaml").write_text(STAGE)
    _run([dvc, "repro", "-q"], first, env)
    _run([dvc, "remote", "add", "-d", "shared", str(remote)], first, env)
    _run(["git", "add", "-A"], first, env)
    _run(["git", "commit", "-q", "-m", "train"], first, env)
    _run([dvc, "push", "-q"], first, env)
    assert any(p.is_file() for p in remote.rglob("*")), "dvc push left the remote empty"

    second = tmp_path / "machine2"
    _run(["git", "clone", "-q", str(first), str(second)], tmp_path, env)
    pulled = second / "checkpoints" / "run" / "last.pt"
    assert not pulled.exists()  # git holds dvc.lock and .gitignore, not the checkpoint
    _run([dvc, "pull", "-q"], second, env)
    assert pulled.read_text() == (first / "checkpoints" / "run" / "last.pt").read_text()
    assert pulled.read_text() == "weights of run\n"
    assert "up to date" in _run([dvc, "status"], second, env)
