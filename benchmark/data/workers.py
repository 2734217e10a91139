"""Worker processes that end with the process that started them.

Python's pool workers wait for work forever once their parent is gone: a SIGKILLed
`cdbench prepare` or `cdbench synth` left two idle workers of about 300 MB each behind, adopted
by PID 1. `exit_with_parent`, given as a pool's `initializer`, ends each worker instead.
"""

from __future__ import annotations

import multiprocessing
import os
import threading


def exit_with_parent() -> None:
    """Pool initializer: end this worker as soon as the process that started it ends.

    A daemon thread waits on the parent's sentinel (closed by the kernel when the parent dies,
    however it dies) and then exits the worker at once.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_wait_then_exit, args=(parent,), daemon=True).start()


def _wait_then_exit(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()
    os._exit(1)
