"""The pixel-difference baseline of a prepared dataset: change detection without learning.

A pixel is predicted changed iff the Euclidean norm of its RGB difference |A - B| (uint8
images) reaches a threshold; the threshold is the one that maximises F1 with the confusion
counts pooled over every pixel of the test split. Choosing it on the test split itself makes
the baseline optimistic: it is the best plain differencing can do there, so a trained model
below it has learned nothing useful. Image differencing is the classic unsupervised change
detector (Singh, "Digital change detection techniques using remotely-sensed data", IJRS
10(6):989-1003, 1989); F1 over every occurring threshold is sklearn's
`precision_recall_curve` rule.

The counts are kept as histograms over the squared norm (0..3*255**2, integers, so exact);
each pair contributes a sparse histogram (`pair_counts`, `pair_counts_from_files`), pooled by
`DifferenceCounts`. `cdbench synth` (benchmark/data/synth.py) scores the pairs it generates,
`cdbench prepare` (benchmark/data/prepare.py) the test files it wrote; both record
`DifferenceCounts.record` as the manifest's `pixel_difference_baseline`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmark.data.images import binarise

MAX_SQUARED_DIFFERENCE = 3 * 255**2
"""Largest squared Euclidean norm of an RGB difference of two uint8 pixels."""

BASELINE_METHOD = (
    "Euclidean norm of the per-pixel RGB difference of the uint8 images; change iff "
    "norm >= threshold; the threshold maximising F1 over all thresholds, with counts pooled "
    "over every pixel of the test split"
)
"""How the baseline is computed, in words (the manifest's `method`)."""

SparseCounts = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""One pair's ((values, counts) of changed pixels, (values, counts) of unchanged pixels) over
the squared difference: `np.unique(..., return_counts=True)`, small enough to pickle back from
a worker process."""


def squared_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel squared Euclidean norm of the RGB difference of two uint8 images, as int64."""
    diff = a.astype(np.int64) - b.astype(np.int64)
    squares: np.ndarray = np.einsum("hwc,hwc->hw", diff, diff)
    return squares


def pair_counts(a: np.ndarray, b: np.ndarray, change: np.ndarray) -> SparseCounts:
    """The sparse histograms of one pair: (H, W, 3) uint8 images and an (H, W) boolean map."""
    squared = squared_differences(a, b)
    return (
        np.unique(squared[change], return_counts=True),
        np.unique(squared[~change], return_counts=True),
    )


def pair_counts_from_files(split_dir: Path, name: str) -> SparseCounts:
    """`pair_counts` of the prepared pair `split_dir/{A,B,label}/<name>.png` as written
    (`benchmark.data.layout.write_pair`: RGB images, labels 0/255)."""
    with Image.open(split_dir / "A" / f"{name}.png") as image:
        a = np.asarray(image.convert("RGB"))
    with Image.open(split_dir / "B" / f"{name}.png") as image:
        b = np.asarray(image.convert("RGB"))
    with Image.open(split_dir / "label" / f"{name}.png") as image:
        change = binarise(np.asarray(image.convert("L")))
    return pair_counts(a, b, change)


def best_f1(changed: np.ndarray, unchanged: np.ndarray) -> tuple[float, int]:
    """The best F1 over thresholds t on a histogram, predicting change iff value >= t.

    Only values that occur are candidate thresholds (as in sklearn's `precision_recall_curve`):
    F1 is constant between two of them.

    Args:
        changed: Count of changed pixels per value (index = value).
        unchanged: Count of unchanged pixels per value, same length.

    Returns:
        (best F1, the smallest occurring value that reaches it). F1 is 0 where nothing is
        changed; (0.0, 0) for empty histograms.
    """
    tp = np.cumsum(changed[::-1])[::-1].astype(np.float64)  # changed pixels with value >= t
    fp = np.cumsum(unchanged[::-1])[::-1].astype(np.float64)
    positives = float(changed.sum())
    denominator = tp + fp + positives  # 2tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    occurring = (changed + unchanged) > 0
    if not occurring.any():
        return 0.0, 0
    best = int(np.argmax(np.where(occurring, f1, -1.0)))
    return float(f1[best]), best


def _histogram() -> np.ndarray:
    return np.zeros(MAX_SQUARED_DIFFERENCE + 1, dtype=np.int64)


@dataclass
class DifferenceCounts:
    """Changed and unchanged pixels per squared difference, pooled over pairs."""

    changed: np.ndarray = field(default_factory=_histogram)
    unchanged: np.ndarray = field(default_factory=_histogram)

    def add(self, counts: SparseCounts) -> None:
        """Pool one pair's sparse histograms (`pair_counts`)."""
        (values, numbers), (u_values, u_numbers) = counts
        np.add.at(self.changed, values, numbers)
        np.add.at(self.unchanged, u_values, u_numbers)

    def record(self, split: str, files: str | None = None) -> dict[str, Any]:
        """The manifest's `pixel_difference_baseline`: the best F1, its threshold on the norm
        (not squared), the method in words, the split and, when given, which files were read."""
        f1, threshold = best_f1(self.changed, self.unchanged)
        record: dict[str, Any] = {
            "best_f1": f1,
            "threshold": math.sqrt(threshold),
            "method": BASELINE_METHOD,
            "split": split,
        }
        if files is not None:
            record["files"] = files
        return record
