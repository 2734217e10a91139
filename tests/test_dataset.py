"""ChangeDetectionDataset (benchmark/data/dataset.py) over the prepared layout, with the
paired transforms applied through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from benchmark.data.dataset import ChangeDetectionDataset
from benchmark.data.layout import write_pair, write_png
from benchmark.data.transforms import IMAGENET_MEAN, IMAGENET_STD, PairNormalize, PairTransform
from benchmark.errors import DataError

H, W = 12, 16


def make_arrays(seed: int, h: int = H, w: int = W) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    change = rng.random((h, w)) < 0.3
    return a, b, change


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    root = tmp_path / "prepared"
    for split in ("train", "val", "test"):
        for i in range(3):
            write_pair(root / split, f"{split}_{i}", *make_arrays(10 * len(split) + i))
    return root


def test_sample_shapes_dtypes_and_values(prepared: Path) -> None:
    dataset = ChangeDetectionDataset(prepared, "val")
    assert len(dataset) == 3
    sample = dataset[1]
    a, b, change = make_arrays(10 * len("val") + 1)
    assert sample["name"] == "val_1"
    assert sample["image"].dtype == torch.uint8
    assert sample["image"].shape == (2, 3, H, W)
    assert torch.equal(sample["image"][0], torch.from_numpy(a).permute(2, 0, 1))
    assert torch.equal(sample["image"][1], torch.from_numpy(b).permute(2, 0, 1))
    assert sample["mask"].dtype == torch.uint8
    assert sample["mask"].shape == (1, H, W)
    assert torch.equal(sample["mask"][0], torch.from_numpy(change.astype(np.uint8)))


def test_batches_through_a_dataloader(prepared: Path) -> None:
    batch = next(iter(DataLoader(ChangeDetectionDataset(prepared, "train"), batch_size=2)))
    assert batch["image"].shape == (2, 2, 3, H, W)
    assert batch["mask"].shape == (2, 1, H, W)
    assert batch["name"] == ["train_0", "train_1"]


def test_whole_images(prepared: Path) -> None:
    write_pair(prepared / "whole" / "test", "test_1", *make_arrays(99, 32, 32))
    dataset = ChangeDetectionDataset(prepared, "test", whole=True)
    assert dataset.names == ["test_1"]
    assert dataset[0]["image"].shape == (2, 3, 32, 32)
    with pytest.raises(DataError, match=r"whole[/\\]val: no whole-image folder"):
        ChangeDetectionDataset(prepared, "val", whole=True)


def test_missing_split_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such split folder; run `cdbench prepare`"):
        ChangeDetectionDataset(tmp_path, "train")


def test_unknown_split_is_refused(prepared: Path) -> None:
    with pytest.raises(DataError, match="split 'training': expected one of train, val, test"):
        ChangeDetectionDataset(prepared, "training")


def test_missing_counterpart_is_named(prepared: Path) -> None:
    (prepared / "train" / "B" / "train_2.png").unlink()
    with pytest.raises(DataError, match=r"missing counterpart\(s\) B/train_2.png"):
        ChangeDetectionDataset(prepared, "train")


def test_corrupt_file_is_named(prepared: Path) -> None:
    dataset = ChangeDetectionDataset(prepared, "train")
    path = prepared / "train" / "A" / "train_1.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=r"A[/\\]train_1\.png: not a readable PNG"):
        dataset[1]
    dataset[0]  # the others still load


def test_label_not_0_or_255_is_named(prepared: Path) -> None:
    label = np.zeros((H, W), dtype=np.uint8)
    label[2, 3] = 128
    label[4, 4] = 255
    write_png(prepared / "test" / "label" / "test_0.png", label)
    with pytest.raises(
        DataError, match=r"label[/\\]test_0\.png: label values must be 0 or 255, found 128"
    ):
        ChangeDetectionDataset(prepared, "test")[0]


def test_size_mismatch_is_named(prepared: Path) -> None:
    write_png(prepared / "test" / "B" / "test_2.png", np.zeros((H, W + 1, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r"pair 'test_2' has A \(12, 16\), B \(12, 17\)"):
        ChangeDetectionDataset(prepared, "test")[2]


def test_transforms_are_applied(prepared: Path) -> None:
    flip = PairTransform(geometric=v2.RandomHorizontalFlip(p=1.0))
    plain = ChangeDetectionDataset(prepared, "train")[0]
    flipped = ChangeDetectionDataset(prepared, "train", transforms=flip)[0]
    assert torch.equal(flipped["image"], plain["image"].flip(-1))
    assert torch.equal(flipped["mask"], plain["mask"].flip(-1))
    assert flipped["name"] == plain["name"]


def test_compose_chains_pair_transforms(prepared: Path) -> None:
    pipeline = v2.Compose(
        [
            PairTransform(v2.RandomCrop(8), v2.ColorJitter(brightness=0.2)),
            PairNormalize((IMAGENET_MEAN, IMAGENET_MEAN), (IMAGENET_STD, IMAGENET_STD)),
        ]
    )
    sample = ChangeDetectionDataset(prepared, "test", transforms=pipeline)[0]
    assert sample["image"].dtype == torch.float32
    assert sample["image"].shape == (2, 3, 8, 8)
    assert sample["mask"].shape == (1, 8, 8)
    assert set(sample["mask"].unique().tolist()) <= {0, 1}
