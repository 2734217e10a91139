"""Transforms of a change-detection sample (a dict, see `benchmark.data.dataset`).

Input and output of every transform here: a sample dict

    {"image": tensor (2, 3, H, W)   dates A and B,
     "mask":  uint8 tensor (1, H, W) in {0, 1},
     "name":  str, and any other key (passed through untouched)}

- `PairTransform` (uint8 in, uint8 out) wraps torchvision.transforms.v2. Its `geometric` part
  (flips, rotations, crops, shifts) is called ONCE on the two dates and the mask together, as a
  `tv_tensors.Image` of shape (2, 3, H, W) and a `tv_tensors.Mask`: v2 draws one set of random
  parameters for all of them and resamples the mask with nearest-neighbour interpolation, so it
  stays in {0, 1} and aligned with both dates. Its `photometric` part (colour jitter) is called
  once PER DATE, so each date gets its own draw, and never touches the mask.
- `PairNormalize` (uint8 in, float32 out) converts the image to float32 and applies a per-date
  channel mean and (optional) std, with an optional RGB->BGR flip and an optional division by
  255. Two recipes of the suite:
    * ImageNet statistics (open-cd's IFN recipe): `PairNormalize((IMAGENET_MEAN,) * 2,
      (IMAGENET_STD,) * 2)` -> (x / 255 - mean) / std, RGB;
    * BSFNet's released code (ClarissaDHL/BSFNet `cd_code/bsfnet_cd.py`):
      `PairNormalize((mean_t0_bgr, mean_t1_bgr), std=None, bgr=True, divide_by_255=False)`
      -> BGR, 0..255 scale, a different channel mean subtracted from each date, no std.
  The mask is left as uint8 {0, 1}.

Chain them with `torchvision.transforms.v2.Compose([PairTransform(...), PairNormalize(...)])`.

Checked against torchvision's v2 documentation ("Transforming images, videos, boxes and
more": one call transforms every tv_tensor of a structure with the same parameters) and
torchgeo's convention of a sample dict with `image` of shape (T, C, H, W). Departure from
torchgeo: its augmentations (kornia `VideoSequential`) are replaced by torchvision v2, which
the suite already depends on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

Sample = dict[str, Any]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""RGB channel means of ImageNet on the 0..1 scale (torchvision's pretrained weights)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""RGB channel standard deviations of ImageNet on the 0..1 scale."""


def check_sample(sample: Sample) -> None:
    """Raise ValueError unless `sample` has an image (2, 3, H, W) and a mask (1, H, W)."""
    image, mask = sample["image"], sample["mask"]
    if image.ndim != 4 or image.shape[:2] != (2, 3):
        raise ValueError(f"sample image: expected shape (2, 3, H, W), got {tuple(image.shape)}")
    if mask.ndim != 3 or mask.shape[0] != 1 or mask.shape[1:] != image.shape[2:]:
        raise ValueError(
            f"sample mask: expected shape (1, {image.shape[2]}, {image.shape[3]}), "
            f"got {tuple(mask.shape)}"
        )


class PairTransform:
    """Geometric transforms shared by both dates and the mask, photometric ones per date.

    Args:
        geometric: A v2 transform (or `v2.Compose`) applied once to the two dates and the mask
            with the same random parameters. Put only geometric transforms here: a colour
            transform here would also be shared by both dates.
        photometric: A v2 transform applied to each date separately (its own random draw per
            date); the mask is not passed to it.
    """

    def __init__(
        self, geometric: v2.Transform | None = None, photometric: v2.Transform | None = None
    ) -> None:
        self.geometric = geometric
        self.photometric = photometric

    def __call__(self, sample: Sample) -> Sample:
        check_sample(sample)
        image, mask = sample["image"], sample["mask"]
        if self.geometric is not None:
            out = self.geometric({"image": tv_tensors.Image(image), "mask": tv_tensors.Mask(mask)})
            image = out["image"].as_subclass(torch.Tensor)
            mask = out["mask"].as_subclass(torch.Tensor)
        if self.photometric is not None:
            dates = [self.photometric(tv_tensors.Image(date)) for date in image]
            image = torch.stack([date.as_subclass(torch.Tensor) for date in dates])
        return {**sample, "image": image, "mask": mask}

    def __repr__(self) -> str:
        return f"PairTransform(geometric={self.geometric!r}, photometric={self.photometric!r})"


class PairNormalize:
    """uint8 image (2, 3, H, W) -> float32 (2, 3, H, W): optional /255, optional BGR, per-date
    (x - mean[date]) / std[date].

    The order is: convert to float32, divide by 255 if `divide_by_255`, flip RGB to BGR if
    `bgr`, subtract the date's mean, divide by the date's std. `mean` and `std` are therefore
    given in the OUTPUT channel order (B, G, R when `bgr`) and on the output scale.

    Args:
        mean: (mean of date A, mean of date B), three numbers each.
        std: (std of date A, std of date B), three numbers each; None: no division.
        bgr: Reverse the channel order (RGB -> BGR), as Caffe-era code expects.
        divide_by_255: Scale 0..255 to 0..1 first; False keeps the 0..255 scale.
    """

    def __init__(
        self,
        mean: tuple[Sequence[float], Sequence[float]],
        std: tuple[Sequence[float], Sequence[float]] | None = None,
        bgr: bool = False,
        divide_by_255: bool = True,
    ) -> None:
        self.mean = _per_date("mean", mean)
        self.std = _per_date("std", std) if std is not None else None
        if self.std is not None and bool((self.std <= 0).any()):
            raise ValueError(f"std: expected positive numbers, got {self.std.tolist()}")
        self.bgr = bgr
        self.divide_by_255 = divide_by_255

    def __call__(self, sample: Sample) -> Sample:
        check_sample(sample)
        return {**sample, "image": self.images(sample["image"])}

    def images(self, image: torch.Tensor) -> torch.Tensor:
        """The same on uint8 images (..., 2, 3, H, W) on any device, e.g. a whole batch
        (B, 2, 3, H, W) on the GPU after the transfer: the training loop normalises there."""
        if image.dtype != torch.uint8:
            raise ValueError(f"PairNormalize: expected a uint8 image, got {image.dtype}")
        if image.shape[-4:-2] != (2, 3):
            raise ValueError(f"PairNormalize: expected (..., 2, 3, H, W), got {tuple(image.shape)}")
        x = image.to(torch.float32)
        if self.divide_by_255:
            x = x / 255
        if self.bgr:
            x = x.flip(-3)
        x = x - self.mean.to(x.device)
        if self.std is not None:
            x = x / self.std.to(x.device)
        return x

    def __repr__(self) -> str:
        std = None if self.std is None else _rounded(self.std)
        return (
            f"PairNormalize(mean={_rounded(self.mean)}, std={std}, "
            f"bgr={self.bgr}, divide_by_255={self.divide_by_255})"
        )


def _per_date(what: str, values: tuple[Sequence[float], Sequence[float]]) -> torch.Tensor:
    """Two triples -> a float32 tensor (2, 3, 1, 1) that broadcasts over (2, 3, H, W)."""
    tensor = torch.as_tensor([list(v) for v in values], dtype=torch.float32)
    if tensor.shape != (2, 3):
        raise ValueError(
            f"{what}: expected two triples (date A, date B), got shape {tuple(tensor.shape)}"
        )
    return tensor[:, :, None, None]


def _rounded(values: torch.Tensor) -> list[list[float]]:
    return [[round(v, 6) for v in row] for row in values.flatten(1).tolist()]
