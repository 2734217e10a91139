"""Recipes of params.yaml turned into torch objects (benchmark/training/recipe.py): learning-rate
schedules, optimisers, training transforms and the cat_max_ratio crop.

Expected numbers are written out by hand from the sources the recipes reproduce
(BSFNet's released training code; open-cd's IFN config for LEVIR-CD, CDLab's for CDD), not
recomputed with the code under test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau
from torchvision import tv_tensors
from torchvision.transforms import v2

from benchmark.config import Params
from benchmark.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from benchmark.training.recipe import (
    CatMaxRatioCrop,
    bsfnet_step_lr,
    build_optimizer,
    build_scheduler,
    train_transform,
)
from tests.conftest import small_recipe

REPO = Path(__file__).resolve().parents[1]


def _lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


# --- 1. BSFNet's step decay ------------------------------------------------------------------

# Released formula (ClarissaDHL/BSFNet utils/utils.py, called with init_lr 1e-5 before every
# iteration, `step` counted from 0):
#   step <= 150_000: lr = 1e-5 - 2e-6 * (step // 75_000)
#   step >  150_000: lr = 0.7 * 1e-5 - 1e-6 * (step // 75_000)
BSFNET_LRS = [
    (0, 1e-5),  # 0 // 75k = 0 -> 1e-5
    (74_999, 1e-5),  # 74_999 // 75k = 0 -> 1e-5
    (75_000, 8e-6),  # 1 -> 1e-5 - 2e-6
    (149_999, 8e-6),  # 1 -> 1e-5 - 2e-6
    (150_000, 6e-6),  # 2, still the first branch (<=) -> 1e-5 - 4e-6
    (150_001, 5e-6),  # 2, second branch -> 7e-6 - 2e-6
    (224_999, 5e-6),  # 2 -> 7e-6 - 2e-6
    (225_000, 4e-6),  # 3 -> 7e-6 - 3e-6
    (499_999, 1e-6),  # 6 -> 7e-6 - 6e-6 (last step of 200 CDD epochs of 2,500 batches)
]


@pytest.mark.parametrize(("step", "expected"), BSFNET_LRS)
def test_bsfnet_step_lr_matches_released_formula(step: int, expected: float) -> None:
    assert bsfnet_step_lr(step) == pytest.approx(expected, rel=1e-9)


def test_bsfnet_official_lambda_lr_follows_the_step_decay(repository_params: Params) -> None:
    recipe = repository_params.recipes["bsfnet-official"]
    assert recipe.optimizer.lr == pytest.approx(1e-5)
    optimizer = build_optimizer(recipe, nn.Linear(2, 1).parameters())
    scheduler = build_scheduler(recipe, optimizer, total_steps=500_000)
    assert isinstance(scheduler, LambdaLR)
    # The factor function, for every step of the table.
    (factor,) = scheduler.lr_lambdas
    for step, expected in BSFNET_LRS:
        assert recipe.optimizer.lr * factor(step) == pytest.approx(expected, rel=1e-9), step
    # Through the scheduler itself: after N scheduler steps the optimiser holds lr(N).
    checkpoints = {step: lr for step, lr in BSFNET_LRS if step <= 225_000}
    optimizer.step()  # (no gradients: a no-op that keeps torch from warning about the order)
    seen = {0: _lr(optimizer)}
    for step in range(1, max(checkpoints) + 1):
        scheduler.step()
        if step in checkpoints:
            seen[step] = _lr(optimizer)
    assert seen == pytest.approx(checkpoints, rel=1e-9)


# --- 2. open-cd warm-up + poly, CDLab plateau -----------------------------------------------


def test_ifn_opencd_warmup_poly(repository_params: Params) -> None:
    recipe = repository_params.recipes["ifn-opencd"]
    assert recipe.iterations == 40_000 and recipe.schedule.warmup_iters == 1000
    optimizer = build_optimizer(recipe, nn.Linear(2, 1).parameters())
    scheduler = build_scheduler(recipe, optimizer, total_steps=40_000)
    assert isinstance(scheduler, LambdaLR)
    # mmengine LinearLR(start_factor=1e-6, end=1000), total_iters 999: factor
    # 1e-6 + (1 - 1e-6) * t / 999; then PolyLR(power 1, eta_min 0, begin=1000, end=40000),
    # total_iters 38_999: 1 - (t - 1000) / 38_999 (see the exact test below).
    s = 1e-6
    expected = {
        0: 1e-3 * s,
        500: 1e-3 * (s + (1 - s) * 500 / 999),  # = 5.005015e-4
        1000: 1e-3,
        20_500: 1e-3 * (1 - 19_500 / 38_999),
        39_999: 0.0,
    }
    assert _lr(optimizer) == pytest.approx(expected[0], rel=1e-9)
    optimizer.step()
    seen = {0: _lr(optimizer)}
    for step in range(1, 40_000):
        scheduler.step()
        if step in expected:
            seen[step] = _lr(optimizer)
    assert seen == pytest.approx(expected, rel=1e-9, abs=1e-15)
    (factor,) = scheduler.lr_lambdas
    assert factor(39_998) == pytest.approx(1 / 38_999, rel=1e-9)
    assert factor(40_000) == 0.0


def test_ifn_opencd_warmup_poly_matches_mmengine_exactly(repository_params: Params) -> None:
    recipe = repository_params.recipes["ifn-opencd"]
    optimizer = build_optimizer(recipe, nn.Linear(2, 1).parameters())
    scheduler = build_scheduler(recipe, optimizer, total_steps=40_000)
    (factor,) = scheduler.lr_lambdas  # type: ignore[union-attr]
    # open-cd: LinearLR(start_factor=1e-6, begin=0, end=1000) then PolyLR(power=1, eta_min=0,
    # begin=1000, end=40000), both stepped after every iteration (mmengine's
    # ParamSchedulerHook). mmengine (optim/scheduler/param_scheduler.py) sets
    # total_iters = end - begin - 1: LinearLR multiplies by 1 + (1 - s) / (999 s + (t-1)(1 - s)),
    # i.e. factor s + (1 - s) t / 999 at iteration t <= 999; PolyLR multiplies by
    # 1 - 1 / (38_999 - k + 1) at iteration 1000 + k, which telescopes to 1 - k / 38_999.
    s = 1e-6
    expected = {
        500: s + (1 - s) * 500 / 999,  # 0.500501
        999: 1.0,
        1000: 1.0,
        20_500: 1 - 19_500 / 38_999,  # 0.4999872
        39_999: 0.0,
    }
    seen = {step: factor(step) for step in expected}
    assert seen == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_ifn_cdlab_plateau(repository_params: Params) -> None:
    recipe = repository_params.recipes["ifn-cdlab"]
    optimizer = build_optimizer(recipe, nn.Linear(2, 1).parameters())
    scheduler = build_scheduler(recipe, optimizer, total_steps=1000)
    assert isinstance(scheduler, ReduceLROnPlateau)
    assert scheduler.mode == "max"
    assert scheduler.factor == pytest.approx(0.1)
    assert scheduler.patience == 5
    assert _lr(optimizer) == pytest.approx(1e-4)
    scheduler.step(0.5)  # the best score so far
    for _ in range(5):  # five validations without improvement: within patience
        scheduler.step(0.4)
        assert _lr(optimizer) == pytest.approx(1e-4)
    scheduler.step(0.4)  # the sixth: lr / 10
    assert _lr(optimizer) == pytest.approx(1e-5)


def test_plateau_is_mode_max_rising_scores_keep_the_lr(repository_params: Params) -> None:
    recipe = repository_params.recipes["ifn-cdlab"]
    optimizer = build_optimizer(recipe, nn.Linear(2, 1).parameters())
    scheduler = build_scheduler(recipe, optimizer, total_steps=1000)
    assert isinstance(scheduler, ReduceLROnPlateau)
    for i in range(20):  # a rising F1 is an improvement every time (mode min would cut the lr)
        scheduler.step(0.1 + 0.01 * i)
    assert _lr(optimizer) == pytest.approx(1e-4)


# --- 3. optimisers ----------------------------------------------------------------------------


def test_build_optimizer_adam_for_bsfnet(repository_params: Params) -> None:
    optimizer = build_optimizer(
        repository_params.recipes["bsfnet-official"], nn.Linear(2, 1).parameters()
    )
    assert type(optimizer) is torch.optim.Adam
    group = optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(1e-5)
    assert tuple(group["betas"]) == pytest.approx((0.5, 0.999))
    assert group["weight_decay"] == 0.0


def test_build_optimizer_adamw_for_opencd(repository_params: Params) -> None:
    optimizer = build_optimizer(
        repository_params.recipes["ifn-opencd"], nn.Linear(2, 1).parameters()
    )
    assert type(optimizer) is torch.optim.AdamW
    group = optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(1e-3)
    assert tuple(group["betas"]) == pytest.approx((0.9, 0.999))
    assert group["weight_decay"] == pytest.approx(0.05)


def test_build_optimizer_skips_frozen_parameters() -> None:
    layer = nn.Linear(3, 2)
    layer.weight.requires_grad_(False)
    optimizer = build_optimizer(small_recipe(), layer.parameters())
    params = [p for group in optimizer.param_groups for p in group["params"]]
    assert len(params) == 1 and params[0] is layer.bias


# --- 6. training transforms -------------------------------------------------------------------


def _blob_mask(size: int) -> torch.Tensor:
    """An asymmetric {0, 1} mask: a flip, rotation or shift of it is a different mask."""
    mask = torch.zeros(1, size, size, dtype=torch.uint8)
    mask[:, 8:50, 6:30] = 1
    mask[:, 55:85, 40:90] = 1
    mask[:, 4:20, 60:92] = 1  # a third of the 96 x 96 pixels changed
    return mask


def _interior(mask: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Pixels whose (2 radius + 1)^2 neighbourhood in `mask` (1, H, W) is of one class."""
    m = mask.float()[None]
    high = torch.nn.functional.max_pool2d(m, 2 * radius + 1, stride=1, padding=radius)
    low = -torch.nn.functional.max_pool2d(-m, 2 * radius + 1, stride=1, padding=radius)
    return (high == low)[0]


def _aligned_sample(size: int = 96) -> dict[str, Any]:
    """Date A is a grey image equal to mask x 255; date B is noise."""
    mask = _blob_mask(size)
    image = torch.empty(2, 3, size, size, dtype=torch.uint8)
    image[0] = mask * 255
    image[1] = torch.randint(0, 256, (3, size, size), generator=torch.Generator().manual_seed(5))
    return {"image": image, "mask": mask, "name": "aligned"}


def _date_a_on_0_255(image: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation of date A (3, H, W) -> 0..255."""
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (image[0] * std + mean) * 255


@pytest.mark.parametrize(
    ("augment", "crop"),
    [("none", None), ("none", 64), ("flips", 64), ("cdlab", None), ("cdlab", 64), ("opencd", 64)],
)
def test_train_transform_keeps_mask_and_image_aligned(augment: str, crop: int | None) -> None:
    transform = train_transform(small_recipe(augment=augment, crop=crop))
    sample = _aligned_sample()
    side = crop or 96
    masks = []
    for seed in range(12):
        torch.manual_seed(seed)
        out = transform(dict(sample))
        image, mask = out["image"], out["mask"]
        assert out["name"] == "aligned"
        assert image.dtype == torch.float32 and image.shape == (2, 3, side, side)
        assert mask.dtype == torch.uint8 and mask.shape == (1, side, side)
        assert set(mask.unique().tolist()) <= {0, 1}
        assert type(image) is torch.Tensor and type(mask) is torch.Tensor
        date_a = _date_a_on_0_255(image)
        if augment == "opencd":
            # Per-date colour jitter moves the grey levels, but black and white stay apart
            # (brightness x 1 +- 10/128, then contrast 0.8-1.2: white >= 187, black <= 52).
            # Compared away from class edges, so that an image resampled bilinearly by the
            # rotation (as open-cd does) would pass too.
            inside = _interior(mask)
            assert inside.float().mean() > 0.6
            white = (date_a > 127.5).to(torch.uint8)
            assert torch.equal(white[:, inside[0]], mask.expand(3, -1, -1)[:, inside[0]])
        else:
            assert torch.allclose(date_a, mask.expand(3, -1, -1).float() * 255, atol=1e-3)
        masks.append(mask)
    distinct = {tuple(m.flatten().tolist()) for m in masks}
    if augment == "none" and crop is None:
        assert all(torch.equal(m, sample["mask"]) for m in masks)
    else:  # a random transform: not the same output for every seed
        assert len(distinct) > 1


def test_opencd_rotation_resamples_images_bilinearly() -> None:
    # Date A holds two grey levels (0 and 255). Photometric jitter maps each level to one new
    # level (brightness and contrast are affine per image; saturation and hue leave grey
    # alone), flips and crops move pixels, and nearest-neighbour rotation copies pixels: two
    # levels stay two. A bilinear rotation (p = 0.5) blends them along every edge.
    transform = train_transform(small_recipe(augment="opencd", crop=64))
    sample = _aligned_sample()
    levels = []
    for seed in range(12):
        torch.manual_seed(seed)
        levels.append(transform(dict(sample))["image"][0, 0].unique().numel())
    assert max(levels) > 2


def test_opencd_photometric_distortion_differs_between_dates() -> None:
    transform = train_transform(small_recipe(augment="opencd", crop=64))
    size = 96
    mask = _blob_mask(size)
    grey = torch.full((3, size, size), 100, dtype=torch.uint8)
    grey[0] = 160  # a coloured pixel: hue and saturation apply
    sample = {"image": torch.stack([grey, grey]), "mask": mask, "name": "p"}
    differ = 0
    for seed in range(10):
        torch.manual_seed(seed)
        image = transform(dict(sample))["image"]
        differ += not torch.allclose(image[0], image[1])
    assert differ >= 5  # each date draws its own jitter (identical dates in, different out)


# --- 7. cat_max_ratio crop --------------------------------------------------------------------


def _square_sample() -> dict[str, Any]:
    size, side = 128, 32
    mask = torch.zeros(1, size, size, dtype=torch.uint8)
    start = (size - side) // 2
    mask[:, start : start + side, start : start + side] = 1
    image = (mask * 255).expand(2, 3, -1, -1).clone()
    return {"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask)}


def test_cat_max_ratio_crop_prefers_crops_with_both_classes() -> None:
    # One 32 x 32 changed square in the middle of 128 x 128; crops of 32. A plain random crop
    # touches the square with probability (63 / 97)^2 ~ 0.42; the cat_max_ratio crop redraws
    # up to 10 times until change covers more than 25 % and less than 75 % of the crop.
    sample = _square_sample()
    cat, plain = CatMaxRatioCrop(32, cat_max_ratio=0.75), v2.RandomCrop(32)
    cat_change = plain_change = balanced = 0
    draws = 200
    for seed in range(draws):
        torch.manual_seed(seed)
        out = cat(sample)
        assert out["mask"].shape == (1, 32, 32) and out["image"].shape == (2, 3, 32, 32)
        assert torch.equal(out["image"][0, 0], out["mask"][0] * 255)  # same window
        changed = float(out["mask"].float().mean())
        cat_change += changed > 0
        balanced += 0.25 < changed < 0.75
        torch.manual_seed(seed)
        plain_change += float(plain(sample)["mask"].float().mean()) > 0
    assert 0.25 < plain_change / draws < 0.6  # around 0.42
    assert cat_change / draws > 0.8
    assert cat_change / draws > plain_change / draws + 0.3
    assert balanced / draws > 0.8


def test_cat_max_ratio_crop_refuses_a_small_image() -> None:
    sample = _square_sample()
    with pytest.raises(ValueError, match="smaller than the crop"):
        CatMaxRatioCrop(256)(sample)
