"""The run (benchmark/run.py): its input normalisation (`normalizer`) and the model and loss it
builds (`build_trainable`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from benchmark.config import load_params
from benchmark.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from benchmark.run import build_trainable, normalizer
from benchmark.training.recipe import train_transform
from tests.conftest import small_recipe


def test_normalizer_bsfnet_cdd_is_bgr_minus_per_date_means() -> None:
    norm = normalizer(small_recipe(normalize="bsfnet-cdd"))
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
    assert train_transform(small_recipe(normalize="bsfnet-cdd"))(
        {"image": image, "mask": torch.zeros(1, 2, 2, dtype=torch.uint8), "name": "n"}
    )["image"].allclose(x)


def test_normalizer_imagenet_cross_checked_with_torchvision() -> None:
    image = torch.randint(0, 256, (2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    image = image.to(torch.uint8)
    out = normalizer(small_recipe(normalize="imagenet"))(
        {"image": image, "mask": torch.zeros(1, 8, 8, dtype=torch.uint8), "name": "n"}
    )["image"]
    reference = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(image.float() / 255)
    assert torch.allclose(out, reference, atol=1e-6)


def test_build_trainable_needs_the_folder_for_a_pretrained_recipe(tiny_pretrained: Path) -> None:
    params = load_params(tiny_pretrained)
    experiment = params.experiment("bsfnet-bce-synthetic")
    with pytest.raises(ValueError, match="weights_dir=None"):
        build_trainable(experiment, params.recipes[experiment.recipe])
