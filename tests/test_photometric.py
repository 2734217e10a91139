"""open-cd's photometric distortion in torch (benchmark/data/photometric.py), checked against
OpenCV's 8-bit HSV conversions over every colour and against a plain transcription of open-cd's
`MultiImgPhotoMetricDistortion` (numpy and OpenCV, one date at a time)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from benchmark.data.opencd import Draws, OpenCDAugment
from benchmark.data.photometric import (
    COLOUR_PARAMS,
    HUE_ON,
    IDENTITY,
    hsv8_to_rgb,
    photometric_distortion,
    rgb_to_hsv8,
)


def _mismatch(ours: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """(fraction of values that differ, largest difference)."""
    difference = np.abs(ours.astype(int) - reference.astype(int))
    return float((difference > 0).mean()), int(difference.max())


def test_rgb_to_hsv_equals_opencv_for_every_colour() -> None:
    levels = np.arange(256, dtype=np.uint8)
    r, g, b = np.meshgrid(levels, levels, levels, indexing="ij")
    rgb = np.stack([r, g, b], -1).reshape(4096, 4096, 3)
    reference = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    h, s, v = rgb_to_hsv8(torch.from_numpy(rgb).permute(2, 0, 1))
    ours = torch.stack([h, s, v], -1).numpy()
    assert _mismatch(ours, reference) == (0.0, 0)


def test_hsv_to_rgb_equals_opencv_for_every_hsv() -> None:
    levels = np.arange(256, dtype=np.uint8)
    h, s, v = np.meshgrid(np.arange(180, dtype=np.uint8), levels, levels, indexing="ij")
    hsv = np.stack([h, s, v], -1).reshape(180 * 256, 256, 3)
    reference = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    planes = torch.from_numpy(hsv).permute(2, 0, 1)
    ours = hsv8_to_rgb(planes[0], planes[1], planes[2]).permute(1, 2, 0).numpy()
    # OpenCV's vectorised x86-64 path, emulated exactly; a build without fused multiply-adds
    # could differ by a level at the rounding edges
    fraction, largest = _mismatch(ours, reference)
    assert fraction < 1e-4 and largest <= 1


def _opencd_photometric(date: np.ndarray, draws: Draws, augment: OpenCDAugment) -> np.ndarray:
    """open-cd's MultiImgPhotoMetricDistortion of one (3, h, w) RGB date, drawing its numbers
    in open-cd's order."""

    def convert(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    img = np.ascontiguousarray(date.transpose(1, 2, 0))
    if draws.coin():
        img = convert(img, beta=draws.uniform(-augment.brightness_delta, augment.brightness_delta))
    contrast_first = draws.coin()
    if contrast_first and draws.coin():
        img = convert(img, alpha=draws.uniform(*augment.contrast_range))
    if draws.coin():
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[:, :, 1] = convert(hsv[:, :, 1], alpha=draws.uniform(*augment.saturation_range))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if draws.coin():
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        shift = draws.integer(-augment.hue_delta, augment.hue_delta)
        hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + shift) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first and draws.coin():
        img = convert(img, alpha=draws.uniform(*augment.contrast_range))
    return img.transpose(2, 0, 1)


def test_photometric_distortion_equals_opencds_on_a_batch() -> None:
    augment = OpenCDAugment()
    rng = np.random.default_rng(0)
    pairs, colours, references = [], [], []
    for seed in range(48):
        noise = rng.integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
        pair = np.stack([cv2.GaussianBlur(d, (5, 5), 0).transpose(2, 0, 1) for d in noise])
        colour = np.empty((2, COLOUR_PARAMS), np.float32)
        draws = Draws(torch.Generator().manual_seed(seed))
        for params in colour:
            augment._colour(draws, params)
        replay = Draws(torch.Generator().manual_seed(seed))
        references.append(np.stack([_opencd_photometric(d, replay, augment) for d in pair]))
        pairs.append(pair)
        colours.append(colour)
    image = torch.from_numpy(np.stack(pairs))
    out = photometric_distortion(image, torch.from_numpy(np.stack(colours)))
    assert out.dtype == torch.uint8 and out.shape == image.shape
    reference = np.stack(references)
    fraction, largest = _mismatch(out.numpy(), reference)
    assert fraction < 1e-4 and largest <= 1
    assert (reference != np.stack(pairs)).mean() > 0.3  # the distortion did change pixels


def test_identity_parameters_leave_the_batch_unchanged() -> None:
    image = torch.randint(0, 256, (3, 2, 3, 16, 16), dtype=torch.uint8)
    identity = torch.tensor(IDENTITY).expand(3, 2, COLOUR_PARAMS)
    assert torch.equal(photometric_distortion(image, identity), image)
    # a hue shift of 0 through HSV is not the identity in 8 bits: "on" must be honoured
    hue = identity.clone()
    hue[..., HUE_ON] = 1.0
    assert not torch.equal(photometric_distortion(image, hue), image)


def test_photometric_distortion_refuses_mismatched_shapes() -> None:
    image = torch.zeros((2, 2, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"expected image \(\.\.\., 2, 3, H, W\)"):
        photometric_distortion(image, torch.zeros((2, 2, 6)))
    with pytest.raises(ValueError, match="colour"):
        photometric_distortion(image[:, :, :2], torch.zeros((2, 2, COLOUR_PARAMS)))
