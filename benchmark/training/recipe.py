"""Turn a recipe of `params.yaml` into torch objects: optimiser, learning-rate schedule and the
training/evaluation transforms.

Sources checked (read, not copied), per recipe:
- `bsfnet-official`: ClarissaDHL/BSFNet (master) `cd_code/bsfnet_cd.py` (Adam, betas 0.5/0.999,
  `adjust_learning_rate` before every step) and `utils/utils.py` (`adjust_learning_rate`: the
  step decay reproduced by `bsfnet_step_lr`).
- `ifn-opencd`: likyoo/open-cd `configs/common/standard_256x256_40k_levircd.py` (AdamW,
  LinearLR warm-up then PolyLR; RandomRotate p 0.5 +-180, RandomCrop 256 with
  cat_max_ratio 0.75, h/v flips, PhotoMetricDistortion).
- `ifn-cdlab`: Bobholamovic/CDLab `configs/svcd/config_svcd_ifn.yaml` (Adam 1e-4,
  ReduceLROnPlateau) and its SVCD augmentation (one random choice of flip, rotation, shift or
  nothing).

Recipe decisions where a source's code does something that is not a recipe:
- BSFNet's `validate()` calls `net_CD.eval()` and training never calls `train()` again, so
  from the first validation (epoch 5) on, its batch-norm layers run in inference mode while
  training. That is a bug; here batch norm trains throughout.
- BSFNet validates every 5th epoch and, in addition, every one of the last 10 epochs; here
  every `val_every` (5) epochs and at the end. Its "best" is the MaxF of a threshold sweep on
  d in steps of 1/255 over [0, 1] (so never above 1 although d reaches 2); here `max_f1`
  sweeps the whole range [0, 2] in steps of 1/1000.
- BSFNet selects on the CDD TEST split; the recipe selects on validation unless
  `selection_split: test` is set, and every record of such a run says so.

The `opencd` augmentation is open-cd's pipeline: rotation, crop and flips computed on the crop
window with OpenCV in the loader (benchmark/data/opencd.py, which states its departures:
rotated-in label corners are 0, not the ignore index, once the crop is chosen; the crop check
counts a grid of the window), the photometric distortion drawn there and applied by the
training loop to whole batches on the device (benchmark/data/photometric.py).

The released BSFNet code has no LEVIR-CD channel means; the CDD means are used for every
dataset.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau
from torchvision.transforms import v2

from benchmark.config import RecipeConfig
from benchmark.data.dataset import ChangeDetectionDataset
from benchmark.data.opencd import OpenCDAugment
from benchmark.data.transforms import PairTransform, Sample
from benchmark.run import normalizer
from benchmark.training.sampler import SeededCrops, SeededSamples

Scheduler = LRScheduler | ReduceLROnPlateau


def build_optimizer(
    recipe: RecipeConfig, parameters: Iterable[nn.Parameter], fused: bool = False
) -> Optimizer:
    """Adam or AdamW over the trainable `parameters` (model and loss).

    `fused`: torch's fused kernel (one kernel for every parameter; CPU and CUDA) instead of
    the default for-each implementation; the same update up to floating-point rounding.
    """
    config = recipe.optimizer
    params = [p for p in parameters if p.requires_grad]
    betas = (config.betas[0], config.betas[1])
    cls = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    return cls(
        params,
        lr=config.lr,
        betas=betas,
        weight_decay=config.weight_decay,
        fused=True if fused else None,
    )


def bsfnet_step_lr(step: int, initial_lr: float = 1e-5) -> float:
    """The learning rate BSFNet's released `adjust_learning_rate` sets before iteration `step`.

    1e-5 for steps 0..74,999, 8e-6 up to 149,999, 6e-6 at 150,000, then
    0.7 x 1e-5 - 1e-6 x (step // 75,000): 5e-6, 4e-6, ... (200 CDD epochs = 500,000 steps end
    at 1e-6). Floored at 1e-6 here: the released formula would reach 0 at step 525,000.
    """
    if step <= 150_000:
        lr = initial_lr - 2e-6 * (step // 75_000)
    else:
        lr = 0.7 * initial_lr - 1e-6 * (step // 75_000)
    return max(lr, 1e-6)


def build_scheduler(recipe: RecipeConfig, optimizer: Optimizer, total_steps: int) -> Scheduler:
    """The recipe's schedule. Iteration schedules are `LambdaLR`s stepped after every optimiser
    step; `plateau` is a `ReduceLROnPlateau` stepped after every validation."""
    config = recipe.schedule
    base_lr = recipe.optimizer.lr
    if config.name == "plateau":
        return ReduceLROnPlateau(
            optimizer, mode="max", factor=config.plateau_factor, patience=config.plateau_patience
        )
    if config.name == "bsfnet-step":
        return LambdaLR(optimizer, _BsfnetFactor(base_lr))
    if config.name == "warmup-poly":
        return LambdaLR(
            optimizer,
            _WarmupPolyFactor(
                config.warmup_iters, config.warmup_start_factor, config.power, total_steps
            ),
        )
    return LambdaLR(optimizer, _constant)


def _constant(step: int) -> float:
    return 1.0


class _BsfnetFactor:
    def __init__(self, base_lr: float) -> None:
        self.base_lr = base_lr

    def __call__(self, step: int) -> float:
        return bsfnet_step_lr(step, self.base_lr) / self.base_lr


class _WarmupPolyFactor:
    """mmengine's LinearLR(start_factor, end=warmup) followed by PolyLR(power, eta_min 0)."""

    def __init__(self, warmup: int, start_factor: float, power: float, total: int) -> None:
        self.warmup, self.start_factor, self.power, self.total = warmup, start_factor, power, total

    def __call__(self, step: int) -> float:
        # mmengine counts `total_iters = end - begin - 1`: the warm-up reaches the full rate at
        # iteration warmup - 1 and the poly decay reaches 0 at the last iteration, total - 1.
        if step < self.warmup:
            return self.start_factor + (1 - self.start_factor) * step / max(self.warmup - 1, 1)
        remaining = 1 - (step - self.warmup) / max(self.total - self.warmup - 1, 1)
        factor: float = max(remaining, 0.0) ** self.power
        return factor


def opencd_augment(recipe: RecipeConfig) -> OpenCDAugment:
    """open-cd's augmentation with the recipe's crop and cat_max_ratio."""
    return OpenCDAugment(crop=recipe.crop, cat_max_ratio=recipe.crop_cat_max_ratio or 1.0)


def training_samples(
    recipe: RecipeConfig, pairs: ChangeDetectionDataset, seed: int
) -> SeededSamples | SeededCrops:
    """What `cdbench train` iterates: `pairs` augmented by the recipe under per-sample seeds,
    uint8 (the loop normalises batches on the device). The `opencd` augmentation reads each
    pair's crop window from the cache instead of the whole pair, and leaves its photometric
    distortion to the loop (batches carry `colour`)."""
    if recipe.augment == "opencd":
        return SeededCrops(pairs, opencd_augment(recipe), seed)
    return SeededSamples(pairs, train_transform(recipe, normalize=False), seed)


def train_transform(recipe: RecipeConfig, normalize: bool = True) -> v2.Compose:
    """Augmentation (shared geometry, per-date colour) and normalisation for training, on
    sample dicts.

    `normalize=False` leaves the image uint8: the training loop normalises whole batches on
    the device instead (`normalizer(recipe).images`), moving a quarter of the bytes.
    """
    if recipe.augment == "opencd":
        augment = opencd_augment(recipe)
        return v2.Compose([augment, normalizer(recipe)] if normalize else [augment])
    geometric: list[Any] = []
    if recipe.crop is not None:
        if recipe.crop_cat_max_ratio is not None:
            geometric.append(CatMaxRatioCrop(recipe.crop, recipe.crop_cat_max_ratio))
        else:
            geometric.append(v2.RandomCrop(recipe.crop))
    if recipe.augment == "flips":
        geometric += [v2.RandomHorizontalFlip(0.5), v2.RandomVerticalFlip(0.5)]
    if recipe.augment == "cdlab":
        geometric.append(
            v2.RandomChoice(
                [
                    v2.RandomHorizontalFlip(1.0),
                    v2.RandomVerticalFlip(1.0),
                    v2.RandomRotation((90, 90)),
                    v2.RandomRotation((180, 180)),
                    v2.RandomRotation((270, 270)),
                    v2.RandomAffine(degrees=0, translate=(0.0625, 0.0625)),
                    v2.Identity(),
                ]
            )
        )
    pair = PairTransform(v2.Compose(geometric) if geometric else None)
    return v2.Compose([pair, normalizer(recipe)] if normalize else [pair])


class CatMaxRatioCrop:
    """mmseg's RandomCrop with `cat_max_ratio`: up to 10 random crops are tried; the first in
    which both classes occur and the larger covers less than `cat_max_ratio` of the crop is
    kept, else one more random crop, unchecked. (Called by `PairTransform` on a dict of
    tv_tensors.)"""

    def __init__(self, size: int, cat_max_ratio: float = 0.75, tries: int = 10) -> None:
        self.size, self.cat_max_ratio, self.tries = size, cat_max_ratio, tries

    def __call__(self, sample: Sample) -> Sample:
        image, mask = sample["image"], sample["mask"]
        height, width = mask.shape[-2:]
        if height < self.size or width < self.size:
            raise ValueError(
                f"CatMaxRatioCrop: image {height} x {width} is smaller than the crop {self.size}"
            )
        for attempt in range(self.tries + 1):
            top = int(torch.randint(0, height - self.size + 1, ()))
            left = int(torch.randint(0, width - self.size + 1, ()))
            if attempt == self.tries:
                break
            window = mask[..., top : top + self.size, left : left + self.size]
            changed = float(window.float().mean())
            if 0 < changed < 1 and max(changed, 1 - changed) < self.cat_max_ratio:
                break
        crop = v2.functional.crop
        return {
            **sample,
            "image": crop(image, top, left, self.size, self.size),
            "mask": crop(mask, top, left, self.size, self.size),
        }

    def __repr__(self) -> str:
        return f"CatMaxRatioCrop(size={self.size}, cat_max_ratio={self.cat_max_ratio})"
