"""The two tiny experiments the queue and launch tests run in parallel (2 steps each on an
8-pair synthetic dataset), as a params.yaml mapping."""

from __future__ import annotations

from tests.conftest import RECIPE_CHOICES, repo_params

RUNS = ("bsfnet-sisb-synthetic", "bsfnet-contrastive-synthetic")

PARAMS = repo_params(
    synth={"size": 64, "train": 8, "val": 2, "test": 2},
    runtime={"device": "cpu", "workers": 0, "system_metrics": False, "progress": False},
    recipes={
        "tiny": {
            **RECIPE_CHOICES,
            "source": "tests",
            "optimizer": {"name": "adam", "lr": 0.001},
            "schedule": {"name": "constant"},
            "batch_size": 4,
            "iterations": 2,
            "val_every": 2,
            "crop": 32,
            "pretrained": False,
        }
    },
    experiments={
        name: {"model": "bsfnet", "loss": name.split("-")[1], "dataset": "synthetic",
               "recipe": "tiny"}
        for name in RUNS
    },
)  # fmt: skip
