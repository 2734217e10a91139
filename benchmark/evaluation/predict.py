"""From a model's output to the score that evaluation thresholds, and scoring a whole split.

Every (model, loss) pair gets one evaluation score per pixel, higher = more change:
- BSFNet trained with `sisb` or `contrastive`: the embedding distance d in [0, 2]
  (kind "distance"; the released test script predicts change where d > 1);
- BSFNet trained with `bce`: sigmoid(scale * d + offset) with the loss's learned scale and
  offset (kind "probability");
- IFN: sigmoid of the full-resolution logit (kind "probability").

`score_split` runs a model over a loader and pools, on the device, exact confusion counts at
the fixed thresholds and a binned score histogram per class (benchmark/evaluation/metrics.py),
so memory stays constant however large the split is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from benchmark.evaluation.metrics import ImageHistograms, ScoreHistogram, ThresholdCounter
from benchmark.losses import DistanceBCELoss
from benchmark.models.output import ChangeOutput

ScoreKind = Literal["distance", "probability"]
SCORE_RANGE: dict[str, tuple[float, float]] = {"distance": (0.0, 2.0), "probability": (0.0, 1.0)}
"""The range of each kind of evaluation score (the histogram's range)."""
HISTOGRAM_BINS = 2000
"""Histogram resolution: thresholds are searched in steps of 1/1000 (distance) or 1/2000."""


def score_kind(model: nn.Module, loss: nn.Module) -> ScoreKind:
    """Which kind of evaluation score this model and loss produce."""
    if isinstance(loss, DistanceBCELoss):
        return "probability"
    return "distance" if type(model).__name__ == "BSFNet" else "probability"


def evaluation_score(output: ChangeOutput, loss: nn.Module) -> Tensor:
    """(B, 1, H, W) float32 score, higher = more change (see the module docstring)."""
    score = output.score.float()
    if output.score_kind == "logit":
        return torch.sigmoid(score)
    if isinstance(loss, DistanceBCELoss):
        return torch.sigmoid(loss.logit(score))
    return score


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
    loss: nn.Module,
    batches: Iterable[dict],
    scores: SplitScores,
    device: torch.device,
    bf16: bool = False,
    channels_last: bool = False,
    keep: int = 0,
) -> list[Tensor]:
    """Add every batch's pixels to `scores`; the model is put in eval mode by the caller.

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
    return kept
