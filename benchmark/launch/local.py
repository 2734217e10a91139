"""The local executor: a pool of worker slots on this machine, one run per slot.

A slot is one GPU (`CUDA_VISIBLE_DEVICES=<card>` for the run's whole process, so
`runtime.device: auto` resolves to `cuda:0` = that card, also when the run resumes from its
checkpoint), or `pack` slots per card when asked; never two runs on one card otherwise.
Without a GPU, N workers share the CPU cores: `OMP_NUM_THREADS = MKL_NUM_THREADS =
max(1, cores // N)`, or a fixed `threads`.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path

from benchmark.errors import CdbenchError
from benchmark.launch.pending import Outcome, TrainStage
from benchmark.progress import print_above, progress_bar


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


def describe(env: dict[str, str]) -> str:
    if "CUDA_VISIBLE_DEVICES" in env:
        return f"cuda:{env['CUDA_VISIBLE_DEVICES']}"
    return f"cpu ({env.get('OMP_NUM_THREADS', '?')} threads)"


def command_env(extra: dict[str, str]) -> dict[str, str]:
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
            stage.cmd, shell=True, cwd=root, env=command_env(env), stdout=out,
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
        return Outcome(stage.name, describe(slot), time.monotonic() - started, state, log)

    outcomes = []
    with (
        ThreadPoolExecutor(max_workers=len(slots)) as pool,
        progress_bar(total=len(stages), desc="launch", unit="run") as bar,
    ):
        futures: dict[Future[Outcome], TrainStage] = {pool.submit(work, s): s for s in stages}
        for future in as_completed(futures):
            outcome = on_end(futures[future], future.result())
            print_above(outcome.line(), bar)
            outcomes.append(outcome)
    return outcomes
