"""From a model's output to the score that evaluation thresholds, and scoring a whole split.

Every trained model gets one evaluation score per pixel, higher = more change, read as its
loss declares (`ChangeLoss.score_kind` and `evaluation_score`, benchmark/losses/base.py):
- BSFNet trained with `sisb` or `contrastive`: the embedding distance d in [0, 2]
  (kind "distance"; the released test script predicts change where d > 1);
- BSFNet trained with `bce`: sigmoid(scale * d + offset) with the loss's learned scale and
  offset (kind "probability");
- IFN (`ifn_ds`): sigmoid of the full-resolution logit (kind "probability").

`score_split` runs a model over a loader and pools, on the device, exact confusion counts at
the fixed thresholds and a binned score histogram per class (benchmark/evaluation/metrics.py),
so memory stays constant however large the split is. A progress bar given to it counts the
pairs scored (evaluation's bar, and validation's inside training).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from benchmark.evaluation.metrics import ImageHistograms, ScoreHistogram, ThresholdCounter
from benchmark.losses import ChangeLoss, ScoreKind
from benchmark.models.output import ChangeOutput

SCORE_RANGE: dict[str, tuple[float, float]] = {"distance": (0.0, 2.0), "probability": (0.0, 1.0)}
"""The range of each kind of evaluation score (the histogram's range)."""
HISTOGRAM_BINS = 2000
"""Histogram resolution: thresholds are searched in steps of 1/1000 (distance) or 1/2000."""


def score_kind(loss: ChangeLoss) -> ScoreKind:
    """Which kind of evaluation score a model trained with `loss` produces (the loss's
    declaration; `benchmark.losses.check_pair` has checked that the model fits it)."""
    return loss.score_kind


def evaluation_score(output: ChangeOutput, loss: ChangeLoss) -> Tensor:
    """(B, 1, H, W) float32 score, higher = more change, as `loss` reads it."""
    return loss.evaluation_score(output)


@dataclass
class SplitScores:
    """What `score_split` pooled over one split."""

    kind: ScoreKind
    fixed: ThresholdCounter
    histogram: ScoreHistogram
    pairs: int
    images: ImageHistograms | None = None
    """Per-image histograms (evaluation of the test split only), in loader order."""
    names: list[str] = field(default_factory=list)
    """The pairs' names in loader order, when `images` is kept."""

    def tensors(self) -> list[Tensor]:
        return self.fixed.tensors() + self.histogram.tensors()


def new_split_scores(
    kind: ScoreKind, thresholds: list[float], device: torch.device, per_image: bool = False
) -> SplitScores:
    """Empty accumulators for one split; `per_image` also keeps each pair's histogram."""
    low, high = SCORE_RANGE[kind]
    histogram = ScoreHistogram(low, high, bins=HISTOGRAM_BINS, device=device)
    return SplitScores(
        kind=kind,
        fixed=ThresholdCounter(thresholds, device=device),
        histogram=histogram,
        pairs=0,
        images=ImageHistograms(histogram) if per_image else None,
    )


@torch.no_grad()
def score_split(
    model: nn.Module,
    loss: ChangeLoss,
    batches: Iterable[dict[str, Any]],
    scores: SplitScores,
    device: torch.device,
    bf16: bool = False,
    channels_last: bool = False,
    keep: int = 0,
    progress: tqdm[Any] | None = None,
) -> list[Tensor]:
    """Add every batch's pixels to `scores`; the model is put in eval mode by the caller.
    `progress` (benchmark.progress.progress_bar) advances by each batch's pairs once they are
    scored; it only counts, so the scores are the same with or without it.

    Returns:
        The score maps (1, H, W) of the split's first `keep` pairs, on the CPU (thumbnails).
    """
    kept: list[Tensor] = []
    for batch in batches:
        image = batch["image"].to(device, non_blocking=True)
        mask = batch["mask"].to(device, non_blocking=True)
        t0, t1 = image[:, 0], image[:, 1]
        if channels_last:
            t0 = t0.contiguous(memory_format=torch.channels_last)
            t1 = t1.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            output = model(t0, t1)
        score = evaluation_score(output, loss)
        scores.fixed.update(score, mask)
        scores.histogram.update(score, mask)
        if scores.images is not None:
            scores.images.update(score, mask)
            scores.names += list(batch["name"])
        scores.pairs += image.shape[0]
        kept += [item.cpu() for item in score[: max(keep - len(kept), 0)]]
        if progress is not None:
            progress.update(image.shape[0])
    return kept


def selection_score(scores: SplitScores, metric: str) -> dict[str, float]:
    """The figures a training run logs for its selection split, and as `selection` the
    recipe's selection `metric` among them: F1, IoU, precision and recall at the fixed
    threshold, the best F1 of the threshold sweep and its threshold, and the mean IoU of the
    changed and unchanged classes (mmseg's `IoUMetric` mIoU)."""
    counts = scores.fixed.counts()[0]
    fixed = counts.scores()
    best_threshold, best_counts = scores.histogram.best_threshold()
    union_unchanged = counts.tn + counts.fp + counts.fn
    iou_unchanged = counts.tn / union_unchanged if union_unchanged else 0.0
    figures = {
        "f1": fixed["f1"],
        "iou": fixed["iou"],
        "precision": fixed["precision"],
        "recall": fixed["recall"],
        "max_f1": best_counts.scores()["f1"],
        "max_f1_threshold": best_threshold,
        "miou": (fixed["iou"] + iou_unchanged) / 2,
    }
    figures["selection"] = figures[metric]
    return figures
