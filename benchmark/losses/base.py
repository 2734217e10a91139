"""What every loss declares: the model output it needs and how its evaluation score is read.

A loss is called as `loss(output, mask) -> (total, parts)` on a model's `ChangeOutput`. Besides
that, each loss class states
- `needs`: the `OutputName`s it reads (e.g. BSFNet's distance, IFN's side logits); a model
  fits the loss when its `outputs` include them all (`benchmark.losses.check_pair`);
- `score_kind`: how the trained model is scored, "distance" (thresholded at
  `thresholds.distance`, a distance in [0, 2]) or "probability" (at `thresholds.probability`,
  in [0, 1]);
- `evaluation_score(output)`: that score per pixel, float32, higher = more change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

from torch import Tensor, nn

from benchmark.models.output import ChangeOutput, OutputName

ScoreKind = Literal["distance", "probability"]
"""How an evaluation score is read: a distance in [0, 2] or a probability in [0, 1]."""


class ChangeLoss(nn.Module, ABC):
    """Base of every loss: `loss(output, mask) -> (total, parts)` plus its declarations."""

    needs: ClassVar[frozenset[OutputName]]
    """The model outputs the loss reads; a model fits it when its `outputs` include them."""
    score_kind: ClassVar[ScoreKind]
    """How the evaluation score of a model trained with this loss is read."""

    @abstractmethod
    def forward(self, output: ChangeOutput, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the scalar to backpropagate and a dict of detached scalars to log."""

    @abstractmethod
    def describe(self) -> str:
        """The loss's form in words for tables and run records ("" where it has one form)."""

    @abstractmethod
    def evaluation_score(self, output: ChangeOutput) -> Tensor:
        """(B, 1, H, W) float32 score of the kind `score_kind`, higher = more change."""
