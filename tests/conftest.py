"""Shared pytest fixtures, and the repository's params.yaml as the base of every test's params."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmark.config import RuntimeConfig, SynthConfig, validate
from tests.httpserver import LocalServer, running_server

RAR_FIXTURES = Path(__file__).resolve().parent / "data" / "rar"
REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
SETTINGS = ("data", "synth", "runtime")
"""The sections of params.yaml that hold settings rather than runs."""


def repo_params(**sections: Any) -> dict[str, Any]:
    """The repository's params.yaml as plain data, changed by `sections`.

    params.yaml is the one source of every setting, so a test's params start from it rather
    than repeating its values. A given settings section (data, synth, runtime) changes only the
    keys it names; given `recipes` or `experiments` replace the repository's (a test runs its
    own tiny experiments, not the repository's twelve).
    """
    content: dict[str, Any] = yaml.safe_load(REPO_PARAMS.read_text())
    for name, value in copy.deepcopy(sections).items():
        if name not in content:
            raise KeyError(f"repo_params: params.yaml has no section {name!r}")
        content[name] = {**content[name], **value} if name in SETTINGS else value
    return content


def write_repo_params(path: Path, **sections: Any) -> Path:
    """Write `repo_params(**sections)` to `path` (a params.yaml file) and return `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(repo_params(**sections), sort_keys=False))
    return path


def synth_config(**changes: Any) -> SynthConfig:
    """params.yaml's `synth` section with `changes` (e.g. a tiny dataset: size=64, train=8)."""
    return validate(SynthConfig, repo_params(synth=changes)["synth"], "synth")


def runtime_config(**changes: Any) -> RuntimeConfig:
    """params.yaml's `runtime` section with `changes` (e.g. device="cpu", workers=0)."""
    return validate(RuntimeConfig, repo_params(runtime=changes)["runtime"], "runtime")


def pytest_configure(config: pytest.Config) -> None:
    """Give each pytest-xdist worker its share of the cores (pyproject.toml's addopts: 2 workers).

    Two workers each running torch's threads on every core would oversubscribe the machine,
    and OpenMP threads that wait on each other run slower than one. A worker's intra-op threads,
    and those of the processes it starts (they inherit OMP_NUM_THREADS and MKL_NUM_THREADS),
    are cores // workers; thread counts the user set are kept.
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:  # the xdist controller, or a run without workers (`-n 0`)
        return
    share = str(max(1, len(os.sched_getaffinity(0)) // int(workers)))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, share)
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _offline_and_quiet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reaches the internet or the user's caches, and no telemetry is sent."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture
def rar_fixtures() -> Path:
    """The real RAR archives of tests/data/rar (rarfile's test files, ISC licence)."""
    return RAR_FIXTURES


@pytest.fixture
def fast_download_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """No pauses between download retries, and short timeouts: test servers are local."""
    from benchmark.data import download

    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)
    monkeypatch.setattr(download, "CONNECT_TIMEOUT_S", 5.0)
    monkeypatch.setattr(download, "READ_TIMEOUT_S", 5.0)


@pytest.fixture
def server() -> Iterator[LocalServer]:
    """A local HTTP server on 127.0.0.1 (tests/httpserver.py), stopped after the test."""
    with running_server() as local:
        yield local
