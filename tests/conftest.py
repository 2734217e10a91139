"""Shared pytest fixtures, and the repository's params.yaml as the base of every test's params."""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmark.config import (
    OptimizerConfig,
    Params,
    RecipeConfig,
    RuntimeConfig,
    ScheduleConfig,
    SynthConfig,
    ThresholdConfig,
    load_params,
    validate,
)
from benchmark.data.cache import write_caches
from benchmark.data.synth import generate_synthetic
from benchmark.speed.loader import write_stand_in
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


def params_copy(tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """tmp_path/edited-params.yaml: the repository's params.yaml as plain data, changed in place
    by `edit`."""
    data = yaml.safe_load(REPO_PARAMS.read_text())
    edit(data)
    path = tmp_path / "edited-params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


RECIPE_CHOICES: dict[str, Any] = {
    "val_every": 1,
    "augment": "none",
    "normalize": "imagenet",
    "thresholds": {"distance": 1.0, "probability": 0.5},
    "selection_split": "val",
    "selection_metric": "f1",
    "pretrained": False,
}
"""The recipe keys without defaults that the tests' recipes do not vary: a dict to spread into
a recipe of a params mapping (a key the recipe gives wins when spread first)."""


def small_recipe(**changes: Any) -> RecipeConfig:
    """A small recipe (adam, constant rate, batch 2, 10 iterations, validated every step, no
    augmentation, ImageNet statistics, thresholds 1.0 / 0.5, selected on val F1, random
    initialisation); `changes` override its fields."""
    base = RecipeConfig(
        source="test",
        optimizer=OptimizerConfig(name="adam", lr=1e-3),
        schedule=ScheduleConfig(name="constant"),
        batch_size=2,
        iterations=10,
        **{**RECIPE_CHOICES, "thresholds": ThresholdConfig(distance=1.0, probability=0.5)},
    )
    return dataclasses.replace(base, **changes)


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


# A one-step pretrained run (frozen encoder) on an 8/2/2-pair synthetic dataset.
TINY_PRETRAINED: dict[str, Any] = {
    "synth": {"seed": 0, "size": 64, "train": 8, "val": 2, "test": 2},
    "runtime": {"device": "cpu", "workers": 0, "system_metrics": False, "progress": False},
    "recipes": {
        "tiny-pretrained": {
            **RECIPE_CHOICES,
            "source": "tests",
            "optimizer": {"name": "adam", "lr": "1e-3"},
            "schedule": {"name": "constant"},
            "batch_size": 4,
            "iterations": 1,
            "val_every": 1,
            "crop": 32,
            "augment": "none",
            "pretrained": True,
        }
    },
    "experiments": {
        "bsfnet-bce-synthetic": {
            "model": "bsfnet",
            "loss": "bce",
            "dataset": "synthetic",
            "recipe": "tiny-pretrained",
            "model_options": {"freeze_encoder": True},
        }
    },
}


@pytest.fixture
def tiny_pretrained(tmp_path: Path) -> Path:
    """params.yaml of a one-step pretrained run (frozen encoder) on an 8/2/2-pair dataset."""
    generate_synthetic(
        tmp_path / "prepared" / "synthetic", synth_config(size=64, train=8, val=2, test=2)
    )
    folders = {
        "raw_dir": str(tmp_path / "raw"),
        "prepared_dir": str(tmp_path / "prepared"),
        "weights_dir": str(tmp_path / "weights"),
    }
    return write_repo_params(tmp_path / "params.yaml", **{**TINY_PRETRAINED, "data": folders})


@pytest.fixture(scope="module")
def repository_params() -> Params:
    """The repository's params.yaml, loaded and validated."""
    return load_params(REPO_PARAMS)


@pytest.fixture(scope="module")
def whole_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LEVIR-CD stand-in of 5 whole 320 x 320 pairs per split, with its caches written."""
    root = tmp_path_factory.mktemp("opencd") / "levir-cd"
    write_stand_in(root, 320, 5, whole=True)
    write_caches(root, progress=False)
    return root


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
