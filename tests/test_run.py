"""The run's input normalisation (benchmark/run.py `normalizer`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from torchvision.transforms import v2

from benchmark.config import OptimizerConfig, RecipeConfig, ScheduleConfig
from benchmark.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from benchmark.run import normalizer
from benchmark.training.recipe import train_transform


def _recipe(**changes: Any) -> RecipeConfig:
    """A small recipe; `changes` override its fields."""
    base = RecipeConfig(
        source="test",
        optimizer=OptimizerConfig(name="adam", lr=1e-3),
        schedule=ScheduleConfig(name="constant"),
        batch_size=2,
        iterations=10,
    )
    return dataclasses.replace(base, **changes)


def test_normalizer_bsfnet_cdd_is_bgr_minus_per_date_means() -> None:
    norm = normalizer(_recipe(normalize="bsfnet-cdd"))
    image = torch.empty(2, 3, 2, 2, dtype=torch.uint8)
    image[:, 0], image[:, 1], image[:, 2] = 200, 100, 10  # R, G, B
    out = norm({"image": image, "mask": torch.zeros(1, 2, 2, dtype=torch.uint8), "name": "n"})
    x = out["image"]
    assert x.dtype == torch.float32
    # BSFNet's released code: B, G, R means on 0..255, A [87.54, 99.83, 90.29], B [119.69, ...]
    expected_a = [10 - 87.54, 100 - 99.83, 200 - 90.29]
    expected_b = [10 - 119.69, 100 - 127.33, 200 - 120.79]
    assert x[0, :, 0, 0].tolist() == pytest.approx(expected_a, abs=1e-4)
    assert x[1, :, 1, 1].tolist() == pytest.approx(expected_b, abs=1e-4)
    assert train_transform(_recipe(normalize="bsfnet-cdd"))(
        {"image": image, "mask": torch.zeros(1, 2, 2, dtype=torch.uint8), "name": "n"}
    )["image"].allclose(x)


def test_normalizer_imagenet_cross_checked_with_torchvision() -> None:
    image = torch.randint(0, 256, (2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    image = image.to(torch.uint8)
    out = normalizer(_recipe(normalize="imagenet"))(
        {"image": image, "mask": torch.zeros(1, 8, 8, dtype=torch.uint8), "name": "n"}
    )["image"]
    reference = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(image.float() / 255)
    assert torch.allclose(out, reference, atol=1e-6)
