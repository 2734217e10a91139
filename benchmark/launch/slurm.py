"""The SLURM executor through submitit (https://github.com/facebookincubator/submitit).

One job per run, with one GPU. The job is a `submitit.helpers.Checkpointable` whose
`checkpoint()` (Checkpointable's own) resubmits the same command when SLURM preempts it or
its time runs out; `cdbench train` resumes from its own `checkpoints/<run>/last.pt`. The same
jobs run through submitit's `LocalExecutor` (`submitit-local`) without a scheduler.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import Checkpointable

from benchmark.errors import CdbenchError
from benchmark.launch.local import command_env
from benchmark.launch.pending import Outcome, TrainStage
from benchmark.progress import print_above, progress_bar

EXECUTORS = ("local", "slurm", "submitit-local")


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
        env = command_env(self.env)
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
    bar = progress_bar(total=len(jobs), desc="launch", unit="run")
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
            print_above(outcome.line(), bar)
            outcomes.append(outcome)
    bar.close()
    return outcomes
