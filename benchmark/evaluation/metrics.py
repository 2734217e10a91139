"""Pooled change-detection metrics of the change class, accumulated on the device.

"Pooled" means: the confusion counts tp/fp/fn/tn are summed over every pixel of every image
of a set first, and the ratios are computed once from those sums (not averaged per image).
Both accumulators keep int64 tensors on their device and never copy anything to the host
while updating (no `.item()`, no `bincount`, which synchronises on CUDA to size its output);
numbers reach Python only when results are read. Their `tensors()` are the whole state, so
under DDP a caller can `dist.all_reduce` them (sum) before reading.

- `ThresholdCounter`: exact counts at a few fixed thresholds.
- `ScoreHistogram`: one histogram of the score per class, from which the counts at every bin
  edge are exact: threshold sweeps, the best-F1 threshold and the precision-recall curve.

Conventions: a pixel is predicted "changed" iff its score, as float64, is strictly greater than
the threshold. A mask pixel is "changed" iff it is non-zero; masks are NOT checked to hold
only 0 and 1 (the caller does that, e.g. `benchmark.losses.check_binary_labels`). NaN scores
are counted on the device and reading any result then raises `ValueError` saying how many
pixels were NaN. A ratio whose denominator is 0 is 0.0 (scikit-learn's `zero_division=0`).

Checked against scikit-learn 1.9.1 (`precision_score`, `recall_score`, `f1_score`,
`jaccard_score`, `accuracy_score`, `cohen_kappa_score` with `pos_label=1`), see
tests/test_metrics.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

_EDGE_TOLERANCE = 1e-9
"""How far a threshold may be from a bin edge in `ScoreHistogram.counts_at_threshold`."""


def _div(numerator: int, denominator: int) -> float:
    """`numerator / denominator`, or 0.0 where the denominator is 0."""
    return numerator / denominator if denominator else 0.0


def _ratios(numerator: Tensor, denominator: Tensor) -> Tensor:
    """Element-wise `numerator / denominator` in float64, 0.0 where the denominator is 0."""
    quotient = numerator.double() / denominator.clamp(min=1).double()
    return torch.where(denominator > 0, quotient, 0.0)


@dataclass(frozen=True)
class Counts:
    """Pooled confusion counts of the change class (positive = changed)."""

    tp: int
    fp: int
    fn: int
    tn: int

    def scores(self) -> dict[str, float]:
        """Precision, recall, F1, IoU, overall accuracy and Cohen's kappa, as fractions.

        precision = tp/(tp+fp), recall = tp/(tp+fn), f1 = 2tp/(2tp+fp+fn), iou = tp/(tp+fp+fn),
        oa = (tp+tn)/n and kappa = (po - pe)/(1 - pe) with po = oa and pe the chance agreement
        ((tp+fp)(tp+fn) + (fn+tn)(fp+tn))/n². Kappa is computed in the equivalent integer form
        2(tp·tn - fn·fp) / ((tp+fp)(fp+tn) + (tp+fn)(fn+tn)), whose denominator is n²(1 - pe).
        Any ratio whose denominator is 0 (kappa: pe == 1, or n == 0) is 0.0.

        Returns:
            `{"precision", "recall", "f1", "iou", "oa", "kappa"}`, all in [0, 1] but kappa,
            which is in [-1, 1].
        """
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        return {
            "precision": _div(tp, tp + fp),
            "recall": _div(tp, tp + fn),
            "f1": _div(2 * tp, 2 * tp + fp + fn),
            "iou": _div(tp, tp + fp + fn),
            "oa": _div(tp + tn, tp + fp + fn + tn),
            "kappa": _div(2 * (tp * tn - fn * fp), (tp + fp) * (fp + tn) + (tp + fn) * (fn + tn)),
        }

    def as_dict(self) -> dict[str, int]:
        """`{"tp": ..., "fp": ..., "fn": ..., "tn": ...}`."""
        return asdict(self)


def _flatten(score: Tensor, mask: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """Check the shapes; return the scores as flat float64 and the mask as flat bool on `device`."""
    if score.shape != mask.shape:
        raise ValueError(
            f"score and mask must have the same shape, got score {tuple(score.shape)} "
            f"and mask {tuple(mask.shape)}"
        )
    flat_score = score.detach().to(device=device, dtype=torch.float64).reshape(-1)
    return flat_score, (mask.detach().to(device) != 0).reshape(-1)


def _raise_if_nan(nan_count: Tensor) -> None:
    """Raise if any NaN score was seen (this reads one number from the device)."""
    seen = int(nan_count.sum().item())
    if seen:
        raise ValueError(
            f"{seen} pixel score(s) were NaN; the model produced NaN scores (diverged training "
            "or a broken checkpoint?), so no metric is computed"
        )


class ThresholdCounter:
    """Exact pooled confusion counts at a few fixed thresholds.

    A pixel is predicted changed iff its score is strictly greater than the threshold.

    Args:
        thresholds: the thresholds, at least one, all finite.
        device: where the counts live; inputs are moved there (a no-op when already there).
    """

    def __init__(self, thresholds: Sequence[float], device: torch.device | str = "cpu") -> None:
        self.thresholds = tuple(float(t) for t in thresholds)
        if not self.thresholds or not all(map(math.isfinite, self.thresholds)):
            raise ValueError(f"expected at least one finite threshold, got {self.thresholds}")
        self.device = torch.device(device)
        self._thresholds = torch.tensor(self.thresholds, dtype=torch.float64, device=self.device)
        # One row per threshold: tp, fp, fn, tn.
        self._confusion = torch.zeros(
            len(self.thresholds), 4, dtype=torch.int64, device=self.device
        )
        self._nan = torch.zeros(1, dtype=torch.int64, device=self.device)

    def update(self, score: Tensor, mask: Tensor) -> None:
        """Add one batch.

        Args:
            score: scores of any shape, e.g. (B, 1, H, W), any real dtype.
            mask: the change mask, same shape, {0, 1} of any dtype (non-zero = changed).

        Raises:
            ValueError: if the shapes differ (naming both).
        """
        flat_score, changed = _flatten(score, mask, self.device)
        self._nan += torch.isnan(flat_score).sum()
        predicted = flat_score.unsqueeze(0) > self._thresholds.unsqueeze(1)  # (T, N)
        tp = (predicted & changed).sum(dim=1)
        fp = predicted.sum(dim=1) - tp
        fn = changed.sum() - tp
        tn = changed.numel() - tp - fp - fn
        self._confusion += torch.stack([tp, fp, fn, tn], dim=1)

    def counts(self) -> list[Counts]:
        """The pooled counts, one per threshold, in order (ValueError if a score was NaN)."""
        _raise_if_nan(self._nan)
        return [Counts(*row) for row in self._confusion.tolist()]

    def tensors(self) -> list[Tensor]:
        """The int64 state (confusion counts, NaN count), to `all_reduce` (sum) in place."""
        return [self._confusion, self._nan]


class ScoreHistogram:
    """Pooled histograms of the score, one per class, exact at every bin edge.

    `edges` splits [low, high] into `bins` equal, right-closed bins. Two more buckets hold
    the scores <= low and the scores > high, so "changed iff score > edges[k]" is exact from
    the histogram for every k in 0..bins, scores outside [low, high] included. The state is
    a (2, bins + 2) int64 tensor (row 0: unchanged pixels, row 1: changed pixels), whatever the
    amount of data. Reading any result raises ValueError if a score was NaN.

    Args:
        low: the first edge.
        high: the last edge, greater than `low`.
        bins: the number of bins between them.
        device: where the counts live; inputs are moved there (a no-op when already there).
    """

    def __init__(
        self, low: float, high: float, bins: int = 1000, device: torch.device | str = "cpu"
    ) -> None:
        if not (math.isfinite(low) and math.isfinite(high) and low < high and bins >= 1):
            raise ValueError(
                f"expected finite low < high and bins >= 1, got low={low}, high={high}, bins={bins}"
            )
        self.bins = bins
        self.device = torch.device(device)
        self.edges = torch.linspace(low, high, bins + 1, dtype=torch.float64)
        self.edges[0], self.edges[-1] = low, high
        self._edges = self.edges.to(self.device)
        self._histogram = torch.zeros(2, bins + 2, dtype=torch.int64, device=self.device)
        self._nan = torch.zeros(1, dtype=torch.int64, device=self.device)

    def update(self, score: Tensor, mask: Tensor) -> None:
        """Add one batch (see `ThresholdCounter.update` for the arguments and errors)."""
        flat_score, changed = _flatten(score, mask, self.device)
        self._nan += torch.isnan(flat_score).sum()
        # Bucket j holds edges[j-1] < score <= edges[j]; bucket 0 is score <= low and bucket
        # bins + 1 is score > high. A NaN lands somewhere in 0..bins+1 and is reported later.
        bucket = torch.bucketize(flat_score, self._edges)
        index = bucket + changed.long() * (self.bins + 2)
        self._histogram.view(-1).scatter_add_(0, index, torch.ones_like(index))

    def _curve(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """tp, fp, fn, tn at every edge (int64 on the CPU, length bins + 1)."""
        _raise_if_nan(self._nan)
        histogram = self._histogram.cpu()
        above = histogram.flip(-1).cumsum(-1).flip(-1)[:, 1:]  # above[c, k]: class c, > edges[k]
        tp, fp = above[1], above[0]
        return tp, fp, histogram[1].sum() - tp, histogram[0].sum() - fp

    def counts_at(self, k: int) -> Counts:
        """The pooled counts at threshold `edges[k]`, k in 0..bins (else ValueError)."""
        if not 0 <= k <= self.bins:
            raise ValueError(f"edge index must be in 0..{self.bins}, got {k}")
        return Counts(*(int(values[k]) for values in self._curve()))

    def counts_at_threshold(self, threshold: float) -> Counts:
        """The pooled counts at `threshold`, an edge within 1e-9 (else ValueError naming the
        nearest edges)."""
        distance = (self.edges - threshold).abs()
        k = int(distance.argmin())
        if not distance[k] <= _EDGE_TOLERANCE:  # NaN included
            above = int(torch.searchsorted(self.edges, torch.tensor([float(threshold)])))
            nearest = self.edges[max(above - 1, 0) : above + 1].tolist()
            raise ValueError(
                f"threshold {threshold} is not an edge of this histogram (the nearest edges are "
                f"{nearest}); pick one of `edges` or count it with a ThresholdCounter"
            )
        return self.counts_at(k)

    def pr_curve(self) -> dict[str, list[float]]:
        """Precision, recall and F1 at every edge (the `threshold`), in edge order."""
        tp, fp, fn, _ = self._curve()
        return {
            "threshold": self.edges.tolist(),
            "precision": _ratios(tp, tp + fp).tolist(),
            "recall": _ratios(tp, tp + fn).tolist(),
            "f1": _ratios(2 * tp, 2 * tp + fp + fn).tolist(),
        }

    def best_threshold(self) -> tuple[float, Counts]:
        """The edge with the highest F1 (the lowest such edge on ties) and its counts."""
        tp, fp, fn, _ = self._curve()
        k = int(torch.argmax(_ratios(2 * tp, 2 * tp + fp + fn)))  # argmax: first maximum
        return float(self.edges[k]), self.counts_at(k)

    def tensors(self) -> list[Tensor]:
        """The int64 state (histogram, NaN count), to `all_reduce` (sum) in place."""
        return [self._histogram, self._nan]


class ImageHistograms:
    """One score histogram per image, on the bins of a `ScoreHistogram`: per-image counts.

    The report's bootstrap intervals resample test images, so they need each image's confusion
    counts at the threshold a protocol chose, which is known only after the whole split was
    seen (the best-F1 threshold on test). Keeping a (2, bins + 2) histogram per image makes the
    counts at every edge available afterwards; summed over images they equal the pooled
    `ScoreHistogram` exactly. Memory: 2 x (bins + 2) int64 per image on the device (64 kB at
    2000 bins; 3000 CDD test pairs: 190 MB).

    Args:
        like: the pooled histogram whose edges (and device) these histograms share.
    """

    def __init__(self, like: ScoreHistogram) -> None:
        self.bins = like.bins
        self.edges = like.edges
        self.device = like.device
        self._edges = like._edges
        self._rows: list[Tensor] = []

    def update(self, score: Tensor, mask: Tensor) -> None:
        """Add one batch of images, (B, ...) scores and masks (as `ThresholdCounter.update`)."""
        if score.shape != mask.shape or score.dim() < 1:
            raise ValueError(
                f"score and mask must have the same (B, ...) shape, got score "
                f"{tuple(score.shape)} and mask {tuple(mask.shape)}"
            )
        batch = score.shape[0]
        flat_score = score.detach().to(device=self.device, dtype=torch.float64).reshape(batch, -1)
        changed = (mask.detach().to(self.device) != 0).reshape(batch, -1)
        index = torch.bucketize(flat_score, self._edges) + changed.long() * (self.bins + 2)
        rows = torch.zeros(batch, 2 * (self.bins + 2), dtype=torch.int64, device=self.device)
        rows.scatter_add_(1, index, torch.ones_like(index))
        self._rows.append(rows.view(batch, 2, self.bins + 2))

    def __len__(self) -> int:
        return sum(rows.shape[0] for rows in self._rows)

    def counts_at_threshold(self, threshold: float) -> Tensor:
        """(N, 4) int64 on the CPU: tp, fp, fn, tn of each image at `threshold`, an edge
        within 1e-9 (else ValueError)."""
        distance = (self.edges - threshold).abs()
        k = int(distance.argmin())
        if not distance[k] <= _EDGE_TOLERANCE:
            raise ValueError(f"threshold {threshold} is not an edge of these histograms")
        if not self._rows:
            return torch.zeros(0, 4, dtype=torch.int64)
        histograms = torch.cat(self._rows).cpu()  # (N, 2, bins + 2)
        above = histograms[:, :, k + 1 :].sum(-1)  # class c, score > edges[k]
        totals = histograms.sum(-1)
        tp, fp = above[:, 1], above[:, 0]
        return torch.stack([tp, fp, totals[:, 1] - tp, totals[:, 0] - fp], dim=1)
