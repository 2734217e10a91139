"""The paired transforms of a change-detection sample (benchmark/data/transforms.py)."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import InterpolationMode, v2

from benchmark.data.transforms import IMAGENET_MEAN, IMAGENET_STD, PairNormalize, PairTransform

H, W = 12, 16


def coded_sample(h: int = 20, w: int = 24) -> dict[str, object]:
    """A sample whose pixels say where they came from, so alignment can be checked exactly.

    A: channel 0 = 10 + row, channel 1 = 10 + column, channel 2 = 200 (never 0: a 0 marks
    fill); B = 255 - A; mask = 1 where (column + 2 * row) % 3 == 0.
    """
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    a = torch.stack([10 + rows, 10 + cols, torch.full_like(rows, 200)]).to(torch.uint8)
    mask = ((cols + 2 * rows) % 3 == 0).to(torch.uint8)[None]
    return {"image": torch.stack([a, 255 - a]), "mask": mask, "name": "coded"}


def assert_aligned(sample: dict[str, torch.Tensor]) -> int:
    """Check B and the mask still match A pixel by pixel; return the number of non-fill pixels."""
    a, b = sample["image"][0].long(), sample["image"][1].long()
    mask = sample["mask"][0].long()
    fill = a[2] == 0
    assert bool((b[:, fill] == 0).all()) and bool((mask[fill] == 0).all())
    kept = ~fill
    assert torch.equal(b[:, kept], 255 - a[:, kept])
    rows, cols = a[0] - 10, a[1] - 10
    assert torch.equal(mask[kept], ((cols + 2 * rows) % 3 == 0).long()[kept])
    return int(kept.sum())


@pytest.mark.parametrize(
    "geometric",
    [
        v2.RandomHorizontalFlip(p=1.0),
        v2.RandomVerticalFlip(p=1.0),
        v2.RandomRotation(degrees=(90, 90)),
        v2.RandomRotation(degrees=35),
        v2.RandomCrop(size=(8, 12)),
        v2.RandomAffine(degrees=0, translate=(0.2, 0.2)),
        v2.Compose([v2.RandomCrop(16), v2.RandomHorizontalFlip(), v2.RandomRotation(180)]),
    ],
    ids=["hflip", "vflip", "rot90", "rot35", "crop", "shift", "composed"],
)
def test_geometric_transforms_keep_dates_and_mask_aligned(geometric: v2.Transform) -> None:
    transform = PairTransform(geometric=geometric)
    for seed in range(5):
        torch.manual_seed(seed)
        out = transform(coded_sample())
        assert out["image"].dtype == torch.uint8
        assert out["image"].shape[:2] == (2, 3)
        assert out["mask"].shape == (1, *out["image"].shape[2:])
        assert type(out["image"]) is torch.Tensor and type(out["mask"]) is torch.Tensor
        assert assert_aligned(out) > 0
        assert out["name"] == "coded"


def test_geometric_transform_moves_pixels_as_expected() -> None:
    sample = coded_sample(21, 21)
    out = PairTransform(geometric=v2.RandomHorizontalFlip(p=1.0))(sample)
    assert torch.equal(out["image"], sample["image"].flip(-1))
    assert torch.equal(out["mask"], sample["mask"].flip(-1))
    # +90 degrees is counter-clockwise, as torch.rot90 with k=1 over (H, W).
    out = PairTransform(geometric=v2.RandomRotation(degrees=(90, 90)))(sample)
    assert torch.equal(out["image"], torch.rot90(sample["image"], 1, (-2, -1)))
    assert torch.equal(out["mask"], torch.rot90(sample["mask"], 1, (-2, -1)))


def test_mask_stays_binary_after_bilinear_rotation() -> None:
    transform = PairTransform(
        geometric=v2.RandomRotation(degrees=30, interpolation=InterpolationMode.BILINEAR)
    )
    for seed in range(5):
        torch.manual_seed(seed)
        out = transform(coded_sample())
        assert set(out["mask"].unique().tolist()) <= {0, 1}
        assert out["mask"].dtype == torch.uint8


def test_photometric_transforms_are_drawn_per_date() -> None:
    same = torch.full((3, H, W), 120, dtype=torch.uint8)
    sample = {"image": torch.stack([same, same]), "mask": torch.ones(1, H, W, dtype=torch.uint8)}
    torch.manual_seed(0)
    out = PairTransform(photometric=v2.ColorJitter(brightness=0.5))(sample)
    a, b = out["image"]
    assert not torch.equal(a, b)
    # Brightness scales a flat image uniformly: each date is one flat image of its own level.
    assert a.unique().numel() == 1 and b.unique().numel() == 1
    assert torch.equal(out["mask"], sample["mask"])
    # A geometric-only transform does not touch colours.
    out = PairTransform(geometric=v2.RandomHorizontalFlip(p=1.0))(sample)
    assert torch.equal(out["image"][0], out["image"][1])


def test_pair_transform_rejects_a_wrong_shape() -> None:
    bad = {"image": torch.zeros(3, H, W, dtype=torch.uint8), "mask": torch.zeros(1, H, W)}
    with pytest.raises(ValueError, match=r"expected shape \(2, 3, H, W\), got \(3, 12, 16\)"):
        PairTransform()(bad)


def flat_pair(rgb_a: tuple[int, int, int], rgb_b: tuple[int, int, int]) -> dict[str, object]:
    image = torch.tensor([rgb_a, rgb_b], dtype=torch.uint8)[:, :, None, None].expand(2, 3, 2, 2)
    return {"image": image.contiguous(), "mask": torch.zeros(1, 2, 2, dtype=torch.uint8)}


def test_normalise_per_date_mean_and_std_by_hand() -> None:
    normalise = PairNormalize(
        mean=((1, 2, 3), (4, 5, 6)), std=((2, 2, 2), (1, 1, 1)), divide_by_255=False
    )
    out = normalise(flat_pair((10, 20, 30), (40, 50, 60)))
    assert out["image"].dtype == torch.float32
    assert out["image"][0, :, 0, 0].tolist() == [4.5, 9.0, 13.5]  # (10-1)/2, (20-2)/2, (30-3)/2
    assert out["image"][1, :, 1, 1].tolist() == [36.0, 45.0, 54.0]
    assert out["mask"].dtype == torch.uint8


def test_normalise_bsfnet_style_bgr_mean_only() -> None:
    # BSFNet's released recipe: BGR, 0..255, per-date mean (given in B, G, R order), no std.
    normalise = PairNormalize(
        mean=((87.54, 99.83, 90.29), (119.69, 127.33, 120.79)), bgr=True, divide_by_255=False
    )
    out = normalise(flat_pair((10, 20, 30), (200, 100, 50)))["image"]
    assert out[0, :, 0, 0].tolist() == pytest.approx([30 - 87.54, 20 - 99.83, 10 - 90.29])
    assert out[1, :, 0, 0].tolist() == pytest.approx([50 - 119.69, 100 - 127.33, 200 - 120.79])


def test_normalise_imagenet() -> None:
    normalise = PairNormalize((IMAGENET_MEAN, IMAGENET_MEAN), (IMAGENET_STD, IMAGENET_STD))
    out = normalise(flat_pair((0, 255, 51), (255, 0, 0)))["image"]
    expected_a = [(0 - 0.485) / 0.229, (1 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
    expected_b = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225]
    assert out[0, :, 0, 0].tolist() == pytest.approx(expected_a, abs=1e-6)
    assert out[1, :, 0, 0].tolist() == pytest.approx(expected_b, abs=1e-6)


def test_normalise_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"expected a uint8 image, got torch\.float32"):
        PairNormalize(((0, 0, 0), (0, 0, 0)))(
            {"image": torch.zeros(2, 3, 2, 2), "mask": torch.zeros(1, 2, 2)}
        )
    with pytest.raises(ValueError, match=r"mean: expected two triples \(date A, date B\)"):
        PairNormalize(((0, 0, 0),))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="std: expected positive numbers"):
        PairNormalize(((0, 0, 0), (0, 0, 0)), ((1, 1, 1), (1, 0, 1)))
