"""`cdbench launch`: train the pending runs of dvc.yaml in parallel, one per GPU, or on SLURM.

`dvc repro` trains one run after another, and `dvc queue start -j N` puts every run on
`cuda:0`. This module runs the train stages that DVC reports as not up to date, each through
its own `cmd` from dvc.yaml in a separate process, and records each finished run with
`dvc commit --force train@<run>` (one at a time, retried while DVC's repository lock is
busy), so that a following `dvc repro` finds it up to date and `cdbench report` its outputs.

Where a run goes:

- `local` executor: a pool of worker slots on this machine. Each slot is one GPU
  (`CUDA_VISIBLE_DEVICES=<card>` for the whole process, so `runtime.device: auto` resolves to
  `cuda:0` = that card, also when the run resumes from its checkpoint), `pack` slots per card
  when asked; never two runs on one card otherwise. Without a GPU, N workers share the CPU
  cores: each gets `OMP_NUM_THREADS = MKL_NUM_THREADS = max(1, cores // N)`.
- `slurm` executor: one SLURM job per run with one GPU (submitit's `SlurmExecutor`,
  https://github.com/facebookincubator/submitit). The job is a `submitit.helpers.Checkpointable`
  whose `checkpoint()` resubmits the same command when SLURM preempts it or its time runs
  out; `cdbench train` resumes from its own `checkpoints/<run>/last.pt`.
- `submitit-local` executor: the same jobs through submitit's `LocalExecutor` (no scheduler),
  for trying the cluster path on one machine.

A stage that is up to date, whose run lock (`checkpoints/<run>.lock`, benchmark/runlock.py) is
held by a live training, or whose data is missing, is skipped, said in one line.
"""

from __future__ import annotations

import fcntl
import fnmatch
import os
import queue
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import Checkpointable

from benchmark.errors import CdbenchError

TRAIN_PREFIX = "train@"
EXECUTORS = ("local", "slurm", "submitit-local")
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


# --- which stages -------------------------------------------------------------------------


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
            data = tuple(
                root / str(dep.def_path)
                for dep in stage.deps
                if not str(dep.def_path).startswith("benchmark") and dep.def_path != "params.yaml"
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


# --- where each run goes ------------------------------------------------------------------


def visible_devices() -> list[str]:
    """The GPUs of this machine as CUDA indices ("0", "1", ...); empty without CUDA."""
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def worker_slots(
    devices: Sequence[str],
    workers: int | None,
    pack: int = 1,
    cores: int | None = None,
    threads: int | None = None,
) -> list[dict[str, str]]:
    """The environment of each worker slot: one slot per card (`pack` per card when asked),
    at most `workers` slots; on the CPU (no devices) `workers` slots sharing the cores.

    Args:
        devices: CUDA indices of the cards to use (`--devices`), empty for the CPU.
        workers: How many runs at once; None = one per slot (CPU: 1).
        pack: Runs per card (GPU only).
        cores: The CPU cores to share (default: those this process may run on).
        threads: OMP_NUM_THREADS = MKL_NUM_THREADS of each worker (`--threads`), fixed so that
            a run's CPU kernels (their reduction order) do not depend on the machine's cores;
            default: max(1, cores // workers) on the CPU, unset on GPUs.

    Raises:
        CdbenchError: `workers`, `pack` or `threads` is below 1, or a card is listed twice.
    """
    if workers is not None and workers < 1:
        raise CdbenchError(f"--workers {workers}: expected 1 or more")
    if pack < 1:
        raise CdbenchError(f"--pack {pack}: expected 1 or more runs per card")
    if len(set(devices)) != len(devices):
        raise CdbenchError(f"--devices {','.join(devices)}: a card is listed twice")
    if threads is not None and threads < 1:
        raise CdbenchError(f"--threads {threads}: expected 1 or more")
    fixed = (
        {}
        if threads is None
        else {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    )
    if devices:
        slots = [{"CUDA_VISIBLE_DEVICES": d, **fixed} for _ in range(pack) for d in devices]
        return slots[: workers or len(slots)]
    n = workers or 1
    share = str(max(1, (cores or len(os.sched_getaffinity(0))) // n))
    return [fixed or {"OMP_NUM_THREADS": share, "MKL_NUM_THREADS": share} for _ in range(n)]


def _describe(env: dict[str, str]) -> str:
    if "CUDA_VISIBLE_DEVICES" in env:
        return f"cuda:{env['CUDA_VISIBLE_DEVICES']}"
    return f"cpu ({env.get('OMP_NUM_THREADS', '?')} threads)"


def _command_env(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment, with the venv's bin first on PATH (for `cdbench`)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, **extra}


Runner = Callable[[TrainStage, dict[str, str], Path], int]
"""Runs one stage with the slot's environment, writing its output to the log; returns the
exit status. Injectable for tests."""


def run_command(stage: TrainStage, env: dict[str, str], log: Path, root: Path) -> int:
    """Run `stage.cmd` through a shell in `root` (as DVC does) with `env` added."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        return subprocess.run(
            stage.cmd, shell=True, cwd=root, env=_command_env(env), stdout=out,
            stderr=subprocess.STDOUT,
        ).returncode  # fmt: skip


def run_local(
    stages: Sequence[TrainStage],
    slots: Sequence[dict[str, str]],
    logs: Path,
    runner: Runner,
    on_end: Callable[[TrainStage, Outcome], Outcome],
) -> list[Outcome]:
    """Run `stages` on this machine, one per free slot, until all have ended.

    A slot is taken by one run for the run's whole process and given back when it ends, so two
    runs never hold one slot (one card, unless `pack` made several slots per card). `on_end`
    is called in this thread, one run at a time, as runs end (here: `dvc commit`)."""
    free: queue.Queue[dict[str, str]] = queue.Queue()
    for slot in slots:
        free.put(slot)

    def work(stage: TrainStage) -> Outcome:
        slot = free.get()
        log = logs / f"{stage.name}.log"
        started = time.monotonic()
        try:
            code = runner(stage, dict(slot), log)
        finally:
            free.put(slot)
        state = "done" if code == 0 else f"failed (exit {code})"
        return Outcome(stage.name, _describe(slot), time.monotonic() - started, state, log)

    outcomes = []
    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        futures: dict[Future[Outcome], TrainStage] = {pool.submit(work, s): s for s in stages}
        for future in as_completed(futures):
            outcome = on_end(futures[future], future.result())
            print(outcome.line(), flush=True)
            outcomes.append(outcome)
    return outcomes


# --- SLURM through submitit ---------------------------------------------------------------


class TrainJob(Checkpointable):
    """A submitit job running one stage's command. On preemption or timeout, submitit calls
    `checkpoint()` (Checkpointable's: resubmit this same job), and the command resumes from
    the run's own checkpoint."""

    def __init__(self, stage: TrainStage, root: Path, env: dict[str, str]) -> None:
        self.stage = stage
        self.root = root
        self.env = env

    def __call__(self) -> dict[str, Any]:
        import socket

        started = time.monotonic()
        env = _command_env(self.env)
        print(f"{self.stage.name}: {self.stage.cmd} in {self.root}", flush=True)
        done = subprocess.run(self.stage.cmd, shell=True, cwd=self.root, env=env)
        if done.returncode != 0:
            raise CdbenchError(f"{self.stage.name}: `{self.stage.cmd}` exited {done.returncode}")
        card = env.get("CUDA_VISIBLE_DEVICES")
        device = f"cuda:{card}" if card else f"cpu ({env.get('OMP_NUM_THREADS', 'all')} threads)"
        return {
            "host": socket.gethostname(),
            "device": device,
            "seconds": time.monotonic() - started,
        }


@dataclass(frozen=True)
class SlurmOptions:
    """The SLURM settings of each job (sbatch's options of the same names)."""

    partition: str | None = None
    time_min: int = 24 * 60
    gpus: int = 1
    cpus: int = 8
    mem_gb: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None


def submitit_executor(kind: str, logs: Path, options: SlurmOptions) -> submitit.Executor:
    """A submitit executor writing its logs under `logs/<job id>_*`: SLURM (`slurm`) or
    submitit's local one (`submitit-local`)."""
    folder = logs / "%j"
    if kind == "slurm":
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=10)
        parameters: dict[str, Any] = {
            "time": options.time_min, "cpus_per_task": options.cpus, "signal_delay_s": 120,
            "additional_parameters": {"requeue": True},
        }  # fmt: skip
        if options.gpus:
            parameters["gpus_per_node"] = options.gpus
        for name in ("partition", "account", "qos", "constraint"):
            if getattr(options, name):
                parameters[name] = getattr(options, name)
        if options.mem_gb:
            parameters["mem"] = f"{options.mem_gb}G"
        executor.update_parameters(**parameters)
        return executor
    if kind == "submitit-local":
        local = submitit.LocalExecutor(folder=folder)
        local.update_parameters(timeout_min=options.time_min, gpus_per_node=options.gpus)
        return local
    raise CdbenchError(f"--executor {kind}: expected one of {', '.join(EXECUTORS)}")


def run_submitit(
    stages: Sequence[TrainStage],
    root: Path,
    executor: Any,
    on_end: Callable[[TrainStage, Outcome], Outcome],
    env: dict[str, str] | None = None,
    poll_s: float = 5.0,
) -> list[Outcome]:
    """Submit one job per stage to `executor`, wait for them, and call `on_end` (in this
    thread, one at a time) as each ends. A failed job's log is its stderr file in the
    executor's folder."""
    jobs = {executor.submit(TrainJob(stage, root, env or {})): stage for stage in stages}
    for job, stage in jobs.items():
        print(f"{stage.name}: submitted as job {job.job_id} (logs {job.paths.stdout})", flush=True)
    outcomes = []
    pending = dict(jobs)
    while pending:
        ended = [job for job in pending if job.done()]
        if not ended:
            time.sleep(poll_s)
            continue
        for job in ended:
            stage = pending.pop(job)
            try:
                info = job.result()
                outcome = Outcome(stage.name, f"{info['host']} {info['device']}", info["seconds"],
                                  "done", Path(job.paths.stdout))  # fmt: skip
            except Exception as error:  # submitit re-raises the job's error, any type
                state = "failed: " + (str(error).strip().splitlines() or ["?"])[-1][:200]
                outcome = Outcome(stage.name, "job " + str(job.job_id), 0.0, state,
                                  Path(job.paths.stderr))  # fmt: skip
            outcome = on_end(stage, outcome)
            print(outcome.line(), flush=True)
            outcomes.append(outcome)
    return outcomes


# --- the command --------------------------------------------------------------------------


def launch(
    root: Path,
    names: Sequence[str] = (),
    globs: Sequence[str] = (),
    executor: str = "local",
    workers: int | None = None,
    devices: Sequence[str] | None = None,
    pack: int = 1,
    threads: int | None = None,
    logs: Path | None = None,
    slurm: SlurmOptions | None = None,
    runner: Runner | None = None,
    submitit_exec: Any = None,
) -> tuple[list[Outcome], Plan]:
    """Train every chosen train stage of `root` that is not up to date, then `dvc commit` it.

    Args:
        root: The DVC repository (holding dvc.yaml and params.yaml).
        names, globs: The runs to consider (see `_selected`); none = every run.
        executor: "local", "slurm" or "submitit-local" (see the module docstring).
        workers, devices, pack, threads: The local slots (`worker_slots`); `devices` None =
            every GPU.
        logs: Where the logs go (default `<root>/logs/launch`).
        slurm: The SLURM options of each job.
        runner: Replaces `run_command` (tests).
        submitit_exec: A ready submitit executor, replacing the one `executor` names (tests).

    Returns:
        The outcome of each run, and the plan (what was skipped and why).
    """
    logs = logs or root / "logs" / "launch"
    stages = train_stages(root, names, globs)
    chosen = plan(root, stages)
    for line in chosen.skipped + chosen.blocked:
        print(line, flush=True)
    if not chosen.todo:
        return [], chosen

    def record(stage: TrainStage, outcome: Outcome) -> Outcome:
        if outcome.state != "done":
            return outcome
        try:
            dvc_commit(root, stage.name)
        except CdbenchError as error:
            print(error, file=sys.stderr, flush=True)
            return Outcome(outcome.stage, outcome.device, outcome.seconds, "not recorded",
                           outcome.log)  # fmt: skip
        return outcome

    if executor == "local" and submitit_exec is None:
        cards = visible_devices() if devices is None else devices
        slots = worker_slots(cards, workers, pack, threads=threads)
        print(
            f"launch: {len(chosen.todo)} runs on {len(slots)} workers "
            f"({', '.join(_describe(s) for s in slots)}); logs in {logs}",
            flush=True,
        )
        run = runner or (lambda stage, env, log: run_command(stage, env, log, root))
        return run_local(chosen.todo, slots, logs, run, record), chosen
    options = slurm or SlurmOptions()
    chosen_executor = submitit_exec or submitit_executor(executor, logs, options)
    print(f"launch: {len(chosen.todo)} jobs through {executor}; logs in {logs}", flush=True)
    return run_submitit(chosen.todo, root, chosen_executor, record), chosen


def summary(outcomes: Iterable[Outcome], chosen: Plan) -> tuple[str, int]:
    """The closing line and the exit status: 1 when a run failed, was not recorded or was
    blocked by missing data (naming them and their logs), else 0."""
    outcomes = list(outcomes)
    bad = [o for o in outcomes if o.state != "done"]
    done = len(outcomes) - len(bad)
    line = f"launch: {done} trained and recorded, {len(chosen.skipped)} skipped"
    if bad or chosen.blocked:
        failed = "; ".join(f"{o.stage} ({o.state}, log {o.log})" for o in bad)
        blocked = "; ".join(b.split(":")[0] for b in chosen.blocked)
        return line + (f"; failed: {failed}" if bad else "") + (
            f"; blocked: {blocked}" if blocked else ""
        ), 1
    return line, 0
