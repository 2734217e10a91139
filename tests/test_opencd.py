"""open-cd's augmentation computed on the crop window (benchmark/data/opencd.py), checked
against a plain transcription of open-cd's pipeline (rotate the whole image with OpenCV as
mmcv.imrotate does, crop, flip) and its photometric draws. The photometric distortion itself:
tests/test_photometric.py; the seeded crops and the threaded loader that run it:
tests/test_sampler.py and tests/test_batches.py."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from benchmark.data import photometric as colour_steps
from benchmark.data.opencd import CHECK_STRIDE, IGNORE, Draws, OpenCDAugment, _balanced, _Window
from benchmark.data.photometric import COLOUR_PARAMS, photometric_distortion


def _planes(size: int = 320, seed: int = 0) -> np.ndarray:
    """Smooth random dates (7 planes with the label) with rectangular changes."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, size=(6, size // 16, size // 16), dtype=np.uint8)
    planes = np.zeros((7, size, size), np.uint8)
    for c in range(6):
        planes[c] = cv2.resize(low[c], (size, size), interpolation=cv2.INTER_LINEAR)
    for _ in range(6):
        y, x = rng.integers(0, size - 80, size=2)
        h, w = rng.integers(20, 80, size=2)
        planes[6, y : y + h, x : x + w] = 1
        planes[3:6, y : y + h, x : x + w] = rng.integers(0, 256, size=(3, 1, 1))
    return planes


def _rotate_then_crop(
    planes: np.ndarray, angle: float, top: int, left: int, size: int, flips: tuple[bool, bool]
) -> tuple[np.ndarray, np.ndarray]:
    """open-cd's order: mmcv.imrotate of the whole image (bilinear dates with border 0,
    nearest label with border 255), crop, flips; label 255 -> 0 as the suite does."""
    height, width = planes.shape[1:]
    matrix = cv2.getRotationMatrix2D(((width - 1) * 0.5, (height - 1) * 0.5), -angle, 1.0)
    image = np.stack(
        [
            cv2.warpAffine(planes[c], matrix, (width, height), flags=cv2.INTER_LINEAR)
            for c in range(6)
        ]
    ).reshape(2, 3, height, width)
    label = cv2.warpAffine(
        planes[6], matrix, (width, height), flags=cv2.INTER_NEAREST, borderValue=IGNORE
    )
    image = image[..., top : top + size, left : left + size]
    label = label[top : top + size, left : left + size]
    for axis, flip in zip((-1, -2), flips, strict=True):
        if flip:
            image, label = np.flip(image, axis), np.flip(label, axis)
    return image, np.where(label == IGNORE, 0, label)[None]


# --- geometry -----------------------------------------------------------------------------------


@pytest.mark.parametrize("angle", [0.0, 23.5, -97.0, 180.0])
@pytest.mark.parametrize("flips", [(False, False), (True, False), (False, True), (True, True)])
def test_rotated_window_equals_rotating_then_cropping(
    angle: float, flips: tuple[bool, bool]
) -> None:
    planes = _planes()
    size, top, left = 128, 150, 40
    expected_image, expected_mask = _rotate_then_crop(planes, angle, top, left, size, flips)
    image = np.empty((2, 3, size, size), np.uint8)
    mask = np.empty((1, size, size), np.uint8)
    _Window(planes, (size, size), angle, flips).read(top, left, image, mask)
    difference = np.abs(image.astype(int) - expected_image.astype(int))
    # the same OpenCV warp with the matrix shifted by the window's corner: OpenCV's
    # 1/32-pixel fixed-point coordinates may round a few pixels the other way, which moves a
    # bilinear value by at most a 32nd of the step across an edge (255 / 32 < 8)
    assert difference.max() <= 8
    assert (difference == 0).mean() > 0.99
    assert (mask == expected_mask).mean() > 0.999
    assert set(np.unique(mask).tolist()) <= {0, 1}


@pytest.mark.parametrize("flips", [(False, False), (True, False), (False, True), (True, True)])
def test_unrotated_window_is_the_slice_flipped(flips: tuple[bool, bool]) -> None:
    planes = _planes()
    image = np.empty((2, 3, 100, 100), np.uint8)
    mask = np.empty((1, 100, 100), np.uint8)
    _Window(planes, (100, 100), None, flips).read(7, 0, image, mask)
    expected = planes[:, 7:107, 0:100]
    for axis, flip in zip((-1, -2), flips, strict=True):
        if flip:
            expected = np.flip(expected, axis)
    assert np.array_equal(image.reshape(6, 100, 100), expected[:6])
    assert np.array_equal(mask, expected[6:])


def test_crop_check_on_the_grid_agrees_with_the_exact_count() -> None:
    """The grid check (every CHECK_STRIDE-th pixel) against mmseg's exact count on the whole
    window, over random windows and angles: they disagree only near the ratio."""
    planes = _planes(size=512, seed=3)
    rng = np.random.default_rng(1)
    agree = disagree_far = 0
    for _ in range(400):
        angle = float(rng.uniform(-180, 180)) if rng.random() < 0.5 else None
        top, left = (int(v) for v in rng.integers(0, 512 - 256 + 1, size=2))
        window = _Window(planes, (256, 256), angle)
        if angle is None:
            label = planes[6, top : top + 256, left : left + 256]
        else:
            label, _ = _rotate_then_crop(planes, angle, top, left, 256, (False, False))
            full = cv2.warpAffine(
                planes[6],
                cv2.getRotationMatrix2D((255.5, 255.5), -angle, 1.0),
                (512, 512),
                flags=cv2.INTER_NEAREST,
                borderValue=IGNORE,
            )
            label = full[top : top + 256, left : left + 256]
        changed = int((label == 1).sum())
        labelled = int((label != IGNORE).sum())
        exact = _balanced(changed, labelled, 0.75)
        if window.balanced(top, left, 0.75) == exact:
            agree += 1
        elif labelled and abs(max(changed, labelled - changed) / labelled - 0.75) > 0.05:
            disagree_far += 1
    assert agree / 400 > 0.95
    assert disagree_far == 0
    assert CHECK_STRIDE == 8


def test_crop_check_prefers_windows_with_both_classes() -> None:
    # one 128 x 128 changed square in the middle of 512 x 512; windows of 128: a plain random
    # window is balanced (change between 25 and 75 %) with probability p about 0.1; up to 11
    # tries find one with probability 1 - (1 - p)^11, about 0.7
    planes = np.zeros((7, 512, 512), np.uint8)
    planes[6, 192:320, 192:320] = 1
    planes[:6, 192:320, 192:320] = 255
    checked = OpenCDAugment(crop=128, rotate_prob=0.0)
    plain = OpenCDAugment(crop=128, rotate_prob=0.0, cat_max_ratio=1.0)
    hits = {"checked": 0, "plain": 0}
    for seed in range(200):
        for name, augment in (("checked", checked), ("plain", plain)):
            image, mask, _ = augment.planes(planes, torch.Generator().manual_seed(seed))
            assert image.shape == (2, 3, 128, 128) and mask.shape == (1, 128, 128)
            hits[name] += 0.25 < mask.mean() < 0.75
    assert hits["plain"] / 200 < 0.2
    assert hits["checked"] / 200 > 0.65


# --- photometric distortion (drawn here, applied by benchmark/data/photometric.py) ---------------


def test_photometric_draws_follow_opencds_order_and_identity_values() -> None:
    augment = OpenCDAugment()
    kinds = set()
    for seed in range(40):
        colour = np.empty((2, COLOUR_PARAMS), np.float32)
        draws = Draws(torch.Generator().manual_seed(seed))
        for params in colour:
            augment._colour(draws, params)
        # the same numbers drawn as open-cd draws them (tests/test_photometric.py transcribes
        # its pipeline), one date after the other
        replay = Draws(torch.Generator().manual_seed(seed))
        for params in colour:
            brightness = replay.uniform(-10, 10) if replay.coin() else 0.0
            assert params[colour_steps.BRIGHTNESS] == np.float32(brightness)
            first = replay.coin()
            contrast = replay.uniform(0.8, 1.2) if first and replay.coin() else 1.0
            assert params[colour_steps.CONTRAST_FIRST] == np.float32(contrast)
            saturation = replay.uniform(0.8, 1.2) if replay.coin() else None
            assert params[colour_steps.SATURATION_ON] == (saturation is not None)
            assert params[colour_steps.SATURATION] == np.float32(saturation or 1.0)
            hue = replay.integer(-10, 10) if replay.coin() else None
            assert params[colour_steps.HUE_ON] == (hue is not None)
            assert params[colour_steps.HUE] == (hue or 0)
            assert -10 <= params[colour_steps.HUE] < 10
            last = replay.uniform(0.8, 1.2) if not first and replay.coin() else 1.0
            assert params[colour_steps.CONTRAST_LAST] == np.float32(last)
            kinds.add((brightness != 0, first, saturation is not None, hue is not None))
    assert len(kinds) >= 12  # the coins do vary


def test_photometric_distortion_is_per_date() -> None:
    planes = _planes(size=128)
    planes[3:6] = planes[0:3]  # identical dates
    differ = 0
    for seed in range(20):
        image, _, colour = OpenCDAugment(crop=96).planes(
            planes, torch.Generator().manual_seed(seed)
        )
        out = photometric_distortion(torch.from_numpy(image), torch.from_numpy(colour))
        differ += not torch.equal(out[0], out[1])
    assert differ >= 10


# --- input checks, sample dicts, seeds ----------------------------------------------------------


def test_augment_refuses_wrong_planes_and_small_images() -> None:
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"expected uint8 planes \(7, H, W\)"):
        OpenCDAugment().planes(np.zeros((6, 300, 300), np.uint8), generator)
    with pytest.raises(ValueError, match="smaller than the crop 256"):
        OpenCDAugment().planes(np.zeros((7, 200, 300), np.uint8), generator)


def test_augment_on_a_sample_dict_keeps_the_other_keys() -> None:
    planes = _planes(size=96)
    sample = {
        "image": torch.from_numpy(planes[:6].reshape(2, 3, 96, 96).copy()),
        "mask": torch.from_numpy(planes[6:].copy()),
        "name": "p",
    }
    torch.manual_seed(0)
    out = OpenCDAugment(crop=64)(sample)
    assert out["name"] == "p"
    assert out["image"].shape == (2, 3, 64, 64) and out["image"].dtype == torch.uint8
    assert out["mask"].shape == (1, 64, 64) and set(out["mask"].unique().tolist()) <= {0, 1}
