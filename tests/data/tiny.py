"""The tiny training run the end-to-end tests share: a 6-step BSFNet + BCE run on a 64 x 64
synthetic dataset, written into a copy of the repository's params.yaml (`write_params`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import RECIPE_CHOICES, write_repo_params

TINY = {
    "synth": {"seed": 0, "size": 64, "train": 16, "val": 4, "test": 4},
    "runtime": {
        "device": "cpu",
        "workers": 0,
        "checkpoint_every": 2,
        "system_metrics": False,
        "progress": False,
    },
    "recipes": {
        "tiny": {
            **RECIPE_CHOICES,
            "source": "tests",
            "optimizer": {"name": "adam", "lr": "1e-3"},
            "schedule": {"name": "constant"},
            "batch_size": 4,
            "iterations": 6,
            "val_every": 3,
            "crop": 32,
            "augment": "flips",
            "pretrained": False,
        }
    },
    "experiments": {
        "bsfnet-bce-synthetic": {
            "model": "bsfnet",
            "loss": "bce",
            "dataset": "synthetic",
            "recipe": "tiny",
        }
    },
}
RUN = "bsfnet-bce-synthetic"


def write_params(folder: Path, data: Path, changes: dict[str, Any] | None = None) -> Path:
    """folder/params.yaml: the repository's, with TINY's sections, the data in `data` and
    `changes` (whole sections)."""
    folders = {"raw_dir": str(folder / "raw"), "prepared_dir": str(data)}
    sections = {**TINY, "data": folders, **(changes or {})}
    return write_repo_params(folder / "params.yaml", **sections)
