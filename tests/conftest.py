"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.httpserver import LocalServer, running_server

RAR_FIXTURES = Path(__file__).resolve().parent / "data" / "rar"


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
