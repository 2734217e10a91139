"""One process per run: the lock of benchmark/runlock.py, with real processes.

A process holds a run's lock; a second one (a real `cdbench train`, `train_run`,
`evaluate_run`) is refused with a message naming the holder's PID; after kill -9 of the
holder, the kernel has released the lock and the next process takes it.

End-to-end: real `cdbench` processes, not one module of benchmark/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.config import load_params
from benchmark.data.synth import generate_synthetic
from benchmark.errors import CdbenchError
from benchmark.evaluation.evaluate import evaluate_lock_path, evaluate_run
from benchmark.runlock import run_lock
from benchmark.training.loop import lock_path, train_run
from tests.conftest import synth_config
from tests.data.tiny import RUN, write_params

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

HOLD = """
import sys, time
from pathlib import Path
from benchmark.runlock import run_lock
with run_lock(Path(sys.argv[1]), "holder"):
    print("locked", flush=True)
    time.sleep(600)
"""

TAKE = """
import sys
from pathlib import Path
from benchmark.errors import CdbenchError
from benchmark.runlock import run_lock
try:
    with run_lock(Path(sys.argv[1]), "second"):
        print("acquired")
except CdbenchError as error:
    print(error)
    sys.exit(3)
"""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny prepared synthetic dataset: `cdbench train` checks the data before training."""
    root = tmp_path_factory.mktemp("prepared")
    generate_synthetic(root / "synthetic", synth_config(size=64, train=16, val=4, test=4))
    return root


def _python(code: str, lock: Path) -> list[str]:
    return [sys.executable, "-c", code, str(lock)]


def _holder(lock: Path) -> subprocess.Popen[str]:
    """A process that holds `lock` until killed (started once it says so)."""
    process = subprocess.Popen(_python(HOLD, lock), cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "locked"
    return process


def _kill_9(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)


def test_a_second_process_is_refused_naming_the_holder_and_kill_9_frees_the_lock(
    tmp_path: Path,
) -> None:
    lock = tmp_path / "checkpoints" / f"{RUN}.lock"
    holder = _holder(lock)
    try:
        second = subprocess.run(
            _python(TAKE, lock), cwd=REPO, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 3, second.stderr
        assert f"locked by PID {holder.pid}: holder" in second.stdout
    finally:
        _kill_9(holder)
    third = subprocess.run(
        _python(TAKE, lock), cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert third.returncode == 0, third.stdout + third.stderr
    assert third.stdout.strip() == "acquired"


def test_the_lock_is_released_when_the_block_ends_or_raises(tmp_path: Path) -> None:
    lock = tmp_path / "run.lock"
    with pytest.raises(KeyError), run_lock(lock, "first"):
        raise KeyError("boom")
    refused = pytest.raises(CdbenchError, match=f"locked by PID {os.getpid()}: second")
    with run_lock(lock, "second"), refused, run_lock(lock, "third"):
        pass
    assert lock.read_text() == ""  # no stale PID left for the next reader


def test_cdbench_train_is_refused_while_another_trains_the_run(
    tmp_path: Path, prepared: Path
) -> None:
    params_file = write_params(tmp_path, prepared)
    checkpoints = tmp_path / "checkpoints"
    holder = _holder(lock_path(checkpoints / RUN))
    try:
        command = [
            str(BIN / "cdbench"), "--params", str(params_file), "train", RUN,
            "--no-tracking", "--checkpoints", str(checkpoints),
        ]  # fmt: skip
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    finally:
        _kill_9(holder)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"locked by PID {holder.pid}" in done.stderr
    assert "only one 'cdbench train bsfnet-bce-synthetic' may run at a time" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (checkpoints / RUN).exists()  # refused before anything was written


def test_train_run_and_evaluate_run_take_their_run_locks(tmp_path: Path, prepared: Path) -> None:
    params = load_params(write_params(tmp_path, prepared))
    (spec,) = params.runs()
    out = tmp_path / "checkpoints" / RUN
    reports = tmp_path / "reports"
    holder = _holder(lock_path(out))
    try:
        with pytest.raises(CdbenchError, match=f"locked by PID {holder.pid}"):
            train_run(params, spec, out, tracking=False)
    finally:
        _kill_9(holder)
    assert not out.exists()

    holder = _holder(evaluate_lock_path(reports, RUN))
    try:
        with pytest.raises(CdbenchError, match=f"locked by PID {holder.pid}"):
            evaluate_run(params, spec, out, reports, tracking=False)
    finally:
        _kill_9(holder)
    assert not (reports / "metrics").exists()
    # Once the holder is gone, the same call goes on (and stops at the missing training run).
    with pytest.raises(CdbenchError, match="no finished training run"):
        evaluate_run(params, spec, out, reports, tracking=False)
