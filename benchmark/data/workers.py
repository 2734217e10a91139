"""The process pool of `cdbench prepare` and `cdbench synth`, whose workers end with the
process that started them.

Python's pool workers wait for work forever once their parent is gone: a SIGKILLed
`cdbench prepare` or `cdbench synth` left two idle workers of about 300 MB each behind, adopted
by PID 1. `exit_with_parent`, given as the pool's `initializer`, ends each worker instead.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.context import BaseContext
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_in_workers(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    workers: int,
    *,
    chunksize: int,
    context: BaseContext | None = None,
) -> Iterator[Result]:
    """`function` over `items`, results in order, in up to `workers` processes when > 1.

    One item, or `workers` <= 1, runs in this process. The first failing item's exception is
    raised, and an error or Ctrl-C cancels the items not yet started; a pool whose process dies
    raises `BrokenProcessPool` instead of hanging. Workers end with this process, even when it
    is killed outright (`exit_with_parent`).

    Args:
        function: A module-level function (it is pickled by name).
        items: Plain data, pickled to the workers.
        workers: How many processes at most.
        chunksize: Items sent to a worker at a time.
        context: The multiprocessing context of the workers (None: the default).
    """
    if workers <= 1 or len(items) < 2:
        yield from map(function, items)
        return
    with ProcessPoolExecutor(
        min(workers, len(items)), mp_context=context, initializer=exit_with_parent
    ) as pool:
        try:
            yield from pool.map(function, items, chunksize=chunksize)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


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
