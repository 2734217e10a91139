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

The parts: `pending` (which stages; `dvc commit`), `local` (the worker slots), `slurm`
(submitit's jobs); `launch` here ties them together for `cdbench launch`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from benchmark.errors import CdbenchError
from benchmark.launch.local import (
    Runner,
    describe,
    run_command,
    run_local,
    visible_devices,
    worker_slots,
)
from benchmark.launch.pending import Outcome, Plan, TrainStage, dvc_commit, plan, train_stages
from benchmark.launch.slurm import SlurmOptions, run_submitit, submitit_executor


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
            every GPU. `threads` also sets each submitit job's OMP/MKL threads (default: the
            job's `slurm.cpus`).
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
            f"({', '.join(describe(s) for s in slots)}); logs in {logs}",
            flush=True,
        )
        run = runner or (lambda stage, env, log: run_command(stage, env, log, root))
        return run_local(chosen.todo, slots, logs, run, record), chosen
    options = slurm or SlurmOptions()
    chosen_executor = submitit_exec or submitit_executor(executor, logs, options)
    # a job's CPU threads: its allocation (--cpus), not the node's cores that torch would take
    count = str(threads or options.cpus)
    job_env = {"OMP_NUM_THREADS": count, "MKL_NUM_THREADS": count}
    print(f"launch: {len(chosen.todo)} jobs through {executor}; logs in {logs}", flush=True)
    return run_submitit(chosen.todo, root, chosen_executor, record, job_env), chosen


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
