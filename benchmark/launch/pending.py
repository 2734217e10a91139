"""Which train stages of dvc.yaml to run, and recording a finished one in dvc.lock.

The train stages (`train@<run>`, written by benchmark/stages.py) are read with DVC's Python
API (`dvc.repo.Repo`); `Repo.status` says which are not up to date. A stage whose run lock
(`checkpoints/<run>.lock`, held by `cdbench train`: benchmark/runlock.py) is held, or whose
data is missing, is left out, said in one line. `dvc commit --force train@<run>` records a
finished run (deps, params and outputs in dvc.lock; outputs in the cache), retried while
another DVC command holds the repository lock.
"""

from __future__ import annotations

import fcntl
import fnmatch
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import CdbenchError

TRAIN_PREFIX = "train@"
LOCK_RETRY_S = 2.0
LOCK_RETRIES = 150
"""`dvc commit` is retried for up to LOCK_RETRIES x LOCK_RETRY_S (5 minutes) while another DVC
command holds the repository lock."""


@dataclass(frozen=True)
class TrainStage:
    """One `train@<run>` stage of dvc.yaml: its command, its checkpoint folder and its data."""

    name: str
    cmd: str
    out: Path
    data: tuple[Path, ...] = ()

    @property
    def run(self) -> str:
        """The run's name (`<experiment>[-s<seed>]`), the part after `train@`."""
        return self.name.removeprefix(TRAIN_PREFIX)

    @property
    def lock(self) -> Path:
        """The run lock `cdbench train` holds while it trains (benchmark/training/loop.py)."""
        return self.out.parent / f"{self.out.name}.lock"


@dataclass(frozen=True)
class Outcome:
    """How one run ended: where it ran, how long it took, and where its log is."""

    stage: str
    device: str
    seconds: float
    state: str  # "done", "failed" or "not recorded" (trained, but `dvc commit` failed)
    log: Path

    def line(self) -> str:
        return (
            f"{self.stage}: {self.state} on {self.device} in {self.seconds:.0f} s (log {self.log})"
        )


@dataclass
class Plan:
    """The stages to run, and one line for each stage left out and why."""

    todo: list[TrainStage] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)


def _selected(run: str, names: Sequence[str], globs: Sequence[str]) -> bool:
    """Whether run `run` is chosen: no names and no globs choose every run; a name chooses the
    run of that name or every seed of that experiment (`<name>-s<seed>`); a glob matches the
    run's name or the stage's (`train@<run>`)."""
    if not names and not globs:
        return True
    if any(run == name or re.fullmatch(re.escape(name) + r"-s[0-9]+", run) for name in names):
        return True
    return any(
        fnmatch.fnmatchcase(run, g) or fnmatch.fnmatchcase(TRAIN_PREFIX + run, g) for g in globs
    )


def _dvc_locked(error: BaseException) -> bool:
    return "lock" in type(error).__name__.lower() or "Unable to acquire lock" in str(error)


def train_stages(
    root: Path, names: Sequence[str] = (), globs: Sequence[str] = ()
) -> list[TrainStage]:
    """The train stages of `root`/dvc.yaml chosen by `names` and `globs` (see `_selected`).

    Raises:
        CdbenchError: A name or glob matches no train stage (the message lists them).
    """
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = []
        for stage in repo.index.stages:
            if not stage.addressing.startswith(TRAIN_PREFIX) or len(stage.outs) != 1:
                continue
            # dict: once each (the demo's runs name their data twice, as data and weights)
            data = tuple(
                dict.fromkeys(
                    root / str(dep.def_path)
                    for dep in stage.deps
                    if not str(dep.def_path).startswith("benchmark")
                    and dep.def_path != "params.yaml"
                )
            )
            stages.append(
                TrainStage(
                    stage.addressing, str(stage.cmd), root / str(stage.outs[0].def_path), data
                )
            )
    unmatched = [n for n in names if not any(_selected(s.run, [n], []) for s in stages)]
    unmatched += [g for g in globs if not any(_selected(s.run, [], [g]) for s in stages)]
    for pattern in unmatched:
        raise CdbenchError(
            f"{root / 'dvc.yaml'}: no train stage matches {pattern!r}; the runs are "
            f"{', '.join(s.run for s in stages) or 'none'} (run `cdbench stages` after "
            f"adding an experiment to params.yaml)"
        )
    return [s for s in stages if _selected(s.run, names, globs)]


def _held(lock: Path) -> bool:
    """Whether a live process holds the run lock `lock` (an flock, benchmark/runlock.py). The
    probe takes and drops the lock at once, without writing into the file."""
    if not lock.exists():
        return False
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def plan(root: Path, stages: Sequence[TrainStage]) -> Plan:
    """Split `stages` into those to run and those skipped (up to date, locked, data missing)."""
    from dvc.repo import Repo

    result = Plan()
    candidates = []
    for stage in stages:
        missing = [str(p.relative_to(root)) for p in stage.data if not p.exists()]
        if missing:
            result.blocked.append(
                f"{stage.name}: blocked, its data {', '.join(missing)} is missing; produce it "
                f"first (e.g. `dvc repro synth` or `dvc repro prepare@<dataset>`)"
            )
        elif _held(stage.lock):
            result.skipped.append(f"{stage.name}: skipped, {stage.lock} is held (it is training)")
        else:
            candidates.append(stage)
    if not candidates:
        return result
    changed = _retry_locked(lambda: _status(Repo, root, [s.name for s in candidates]), "dvc status")
    for stage in candidates:
        if stage.name in changed:
            result.todo.append(stage)
        else:
            result.skipped.append(f"{stage.name}: skipped, up to date")
    return result


def _status(repo_class: Any, root: Path, targets: list[str]) -> set[str]:
    with repo_class(str(root)) as repo:
        return set(repo.status(targets=targets))


def _retry_locked(call: Callable[[], Any], what: str) -> Any:
    for attempt in range(LOCK_RETRIES):
        try:
            return call()
        except Exception as error:
            if not _dvc_locked(error) or attempt == LOCK_RETRIES - 1:
                raise
            time.sleep(LOCK_RETRY_S)
    raise AssertionError(what)  # unreachable


def dvc_commit(root: Path, stage: str) -> None:
    """`dvc commit --force <stage>` in `root`: records the stage's deps, params and outputs in
    dvc.lock and its outputs in the cache. Retried while DVC's repository lock is busy.

    Raises:
        CdbenchError: DVC refused (the message holds its output).
    """
    command = [sys.executable, "-m", "dvc", "commit", "--force", "--quiet", stage]
    for _ in range(LOCK_RETRIES):
        done = subprocess.run(command, cwd=root, capture_output=True, text=True)
        if done.returncode == 0:
            return
        output = (done.stdout + done.stderr).strip()
        if "Unable to acquire lock" not in output:
            raise CdbenchError(f"{root}: `{shlex.join(command[2:])}` failed: {output}")
        time.sleep(LOCK_RETRY_S)
    raise CdbenchError(f"{root}: DVC's lock stayed busy; run `dvc commit --force {stage}` later")
