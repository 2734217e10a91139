"""The process pool of `cdbench prepare` and `cdbench synth` (benchmark/data/workers.py)."""

from __future__ import annotations

import os

import pytest

from benchmark.data.workers import map_in_workers


def _square_and_pid(value: int) -> tuple[int, int]:
    return value * value, os.getpid()


def _fail_on_three(value: int) -> int:
    if value == 3:
        raise ValueError(f"item {value}")
    return value


def test_results_come_in_item_order_from_worker_processes() -> None:
    results = list(map_in_workers(_square_and_pid, list(range(20)), 2, chunksize=3))
    assert [square for square, _ in results] == [i * i for i in range(20)]
    assert os.getpid() not in {pid for _, pid in results}


def test_one_worker_or_one_item_runs_here() -> None:
    for items, workers in ((list(range(5)), 1), ([7], 4)):
        results = list(map_in_workers(_square_and_pid, items, workers, chunksize=2))
        assert [square for square, _ in results] == [i * i for i in items]
        assert {pid for _, pid in results} == {os.getpid()}


@pytest.mark.parametrize("workers", [1, 2])
def test_the_failing_items_error_is_raised(workers: int) -> None:
    with pytest.raises(ValueError, match="item 3"):
        list(map_in_workers(_fail_on_three, list(range(8)), workers, chunksize=1))
