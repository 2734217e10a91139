"""open-cd's photometric distortion in torch, on whole batches, on the training device.

open-cd's `MultiImgPhotoMetricDistortion` (likyoo/open-cd
`opencd/datasets/transforms/transforms.py`, after mmseg's `PhotoMetricDistortion`), with its
LEVIR-CD values, for each date separately:

1. brightness (p 0.5): x + uniform(-10, 10);
2. contrast (p 0.5): x * uniform(0.8, 1.2), first (mode 1) or last (mode 0), a coin per date;
3. saturation (p 0.5): to OpenCV's 8-bit HSV, S * uniform(0.8, 1.2), back to RGB;
4. hue (p 0.5): to 8-bit HSV, H + an integer in [-10, 10) modulo 180, back to RGB;

each step in float32 and truncated to uint8 (numpy's `astype` after `clip(0, 255)`).

The training loader (`OpenCDAugment` in benchmark/data/opencd.py) draws the numbers of every
pair and date from the pair's own generator and hands them over as `colour`, a float32 tensor
(..., 2, COLOUR_PARAMS) beside the batch; the training loop calls `photometric_distortion` on
the batch once it is on the device. On the loader's CPU threads these steps took about a
third of a pair's time; on a GPU they are some hundred elementwise passes over the batch, all
dates at once, with no host synchronisation (`cdbench bench` times them on its device; no GPU
figure yet).

OpenCV's 8-bit RGB <-> HSV conversions are computed here as OpenCV 4.x computes them
(opencv/opencv `modules/imgproc/src/color_hsv.cpp` and `color_hsv.simd.hpp`: `RGB2HSV_b` in
12-bit fixed point with rounded division tables; `HSV2RGB_b`'s vectorised path in float32,
truncated); tests/test_photometric.py compares them with `cv2.cvtColor` over every colour.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

COLOUR_PARAMS = 7
"""Per date: brightness delta, contrast factor applied first, saturation on (0/1), saturation
factor, hue on (0/1), hue shift, contrast factor applied last. An identity step has delta 0,
factor 1 or on 0."""
BRIGHTNESS, CONTRAST_FIRST, SATURATION_ON, SATURATION, HUE_ON, HUE, CONTRAST_LAST = range(7)
IDENTITY = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0)
"""One date's parameters when no step is drawn: the image is left as it is."""

_HSV_SHIFT = 12
_DIV = np.arange(256, dtype=np.float64)
_DIV[0] = 1.0
_S_DIV = np.where(np.arange(256) > 0, np.rint((255 << _HSV_SHIFT) / _DIV), 0).astype(np.int32)
"""OpenCV's sdiv_table: round(255 * 2^12 / v)."""
_H_DIV = np.where(np.arange(256) > 0, np.rint((180 << _HSV_SHIFT) / (6.0 * _DIV)), 0).astype(
    np.int32
)
"""OpenCV's hdiv_table180: round(180 * 2^12 / (6 diff))."""
_SECTORS = np.array([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]])
"""For each hue sector (0..5), which of (v, p, q, t) is R, G and B (OpenCV's sector_data)."""
_H_SCALE = np.float32(6.0) / np.float32(180.0)
_INV_255 = np.float32(1.0) / np.float32(255.0)


@functools.cache
def _tables(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """The division and sector tables on `device`, copied there once (a copy per batch would
    make the host wait for the device)."""
    return (
        torch.as_tensor(_S_DIV, device=device),
        torch.as_tensor(_H_DIV, device=device),
        torch.as_tensor(_SECTORS, device=device),
    )


def rgb_to_hsv8(rgb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """OpenCV's `COLOR_RGB2HSV` of uint8 levels: (h in 0..179, s, v), int32, from `rgb`
    (..., 3, H, W) holding integer levels (any dtype)."""
    r, g, b = rgb.to(torch.int32).unbind(-3)
    v = torch.maximum(torch.maximum(r, g), b)
    diff = v - torch.minimum(torch.minimum(r, g), b)
    s_table, h_table, _ = _tables(rgb.device)
    s_div, h_div = s_table[v], h_table[diff]
    half = 1 << (_HSV_SHIFT - 1)
    s = (diff * s_div + half) >> _HSV_SHIFT
    h = torch.where(v == r, g - b, torch.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * h_div + half) >> _HSV_SHIFT
    h = torch.where(h < 0, h + 180, h)
    return h, s, v


def hsv8_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """OpenCV's `COLOR_HSV2RGB` of 8-bit HSV (h in 0..179): float32 levels (..., 3, H, W).

    As OpenCV's vectorised path computes it on x86-64: in float32, `1 - s * f` with one
    rounding (a fused multiply-add), the sector from the truncated hue, x 255 truncated."""
    hue = h.to(torch.float32) * float(_H_SCALE)
    sat = s.to(torch.float32) * float(_INV_255)
    val = v.to(torch.float32) * float(_INV_255)
    sector = hue.trunc()
    frac = hue - sector
    sat64 = sat.to(torch.float64)

    def fused(factor: Tensor) -> Tensor:  # 1 - sat * factor, rounded once
        return (1.0 - sat64 * factor.to(torch.float64)).to(torch.float32)

    table = torch.stack([val, val * (1.0 - sat), val * fused(frac), val * fused(1.0 - frac)])
    picks = _tables(h.device)[2][:, sector.to(torch.int64) % 6]  # (3, ...): rows of table
    rgb = torch.gather(table, 0, picks)
    return (rgb * 255.0).trunc_().clamp_(0, 255).movedim(0, -3)


def _convert(x: Tensor, alpha: Tensor | float = 1.0, beta: Tensor | float = 0.0) -> Tensor:
    """open-cd's `convert`: clip(x * alpha + beta, 0, 255) truncated, in float32."""
    return (x * alpha + beta).clamp_(0, 255).trunc_()


def photometric_distortion(image: Tensor, colour: Tensor) -> Tensor:
    """open-cd's photometric distortion of a batch (see the module docstring).

    Args:
        image: uint8 (..., 2, 3, H, W) RGB, e.g. a training batch (B, 2, 3, H, W).
        colour: float32 (..., 2, COLOUR_PARAMS), the loader's draws for each date.

    Returns:
        uint8 of `image`'s shape, on its device.
    """
    if image.shape[-4:-2] != (2, 3) or colour.shape != (*image.shape[:-3], COLOUR_PARAMS):
        raise ValueError(
            f"photometric_distortion: expected image (..., 2, 3, H, W) and colour "
            f"(..., 2, {COLOUR_PARAMS}), got {tuple(image.shape)} and {tuple(colour.shape)}"
        )
    params = colour.to(device=image.device, dtype=torch.float32)[..., None, None, None]
    x = image.to(torch.float32)
    x = _convert(x, beta=params[..., BRIGHTNESS, :, :, :])
    x = _convert(x, alpha=params[..., CONTRAST_FIRST, :, :, :])
    h, s, v = rgb_to_hsv8(x)
    s = _convert(s.to(torch.float32), alpha=params[..., SATURATION, :, :, 0])
    x = torch.where(params[..., SATURATION_ON, :, :, :] > 0, hsv8_to_rgb(h, s, v), x)
    h, s, v = rgb_to_hsv8(x)
    h = torch.remainder(h + params[..., HUE, :, :, 0].to(torch.int32), 180)
    x = torch.where(params[..., HUE_ON, :, :, :] > 0, hsv8_to_rgb(h, s, v), x)
    x = _convert(x, alpha=params[..., CONTRAST_LAST, :, :, :])
    return x.to(torch.uint8)
