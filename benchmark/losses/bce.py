"""BCE on BSFNet's distance map: the "plain pixel classification loss" arm of the ablation.

Not in the released code (`ClarissaDHL/BSFNet` branch `master`, `utils/loss.py` has only
contrastive and IoU losses). BSFNet keeps its exact architecture and still outputs the
distance d in [0, 2]; this loss turns d into a logit through a learnable affine map and
trains with binary cross-entropy with logits, mean over all pixels:

    z = scale * d + offset,        total = bce = mean(BCEWithLogits(z, y))

Initialisation scale = 4, offset = -4:
- z = 0 at d = 1, the released decision threshold (the test script binarises at d > 1), so at
  the start a probability threshold of 0.5 means exactly the released distance threshold;
- over the reachable range d in [0, 2], z spans [-4, 4] and sigmoid(z) spans [0.018, 0.982]:
  the loss is neither flat nor saturated at the start, and the slope dp/dd is 1 at d = 1;
- scale > 0 keeps "higher distance = more change". Both parameters then adapt to the data.

The module owns `scale` and `offset` as `nn.Parameter`s: the trainer must give the loss's
parameters to the optimiser along with the model's, and save the loss's `state_dict` in the
checkpoint, since evaluation needs them (`logit`, `decision_distance`). Computed in float32.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.losses.base import ChangeLoss, ScoreKind
from benchmark.losses.labels import distance_and_target
from benchmark.models.output import ChangeOutput, OutputName


class DistanceBCELoss(ChangeLoss):
    """BCE with logits on a learnable affine map of the distance.

    Args:
        initial_scale: starting value of `scale` (4.0; must be > 0).
        initial_offset: starting value of `offset` (-4.0, so that z = 0 at d = 1).

    Raises:
        ValueError: if `initial_scale` is not positive.
    """

    needs: ClassVar[frozenset[OutputName]] = frozenset({"distance"})
    score_kind: ClassVar[ScoreKind] = "probability"

    def __init__(self, initial_scale: float = 4.0, initial_offset: float = -4.0) -> None:
        super().__init__()
        if initial_scale <= 0:
            raise ValueError(
                f"initial_scale: expected > 0 (higher distance = more change), got {initial_scale}"
            )
        self.scale = nn.Parameter(torch.tensor(float(initial_scale)))
        self.offset = nn.Parameter(torch.tensor(float(initial_offset)))

    def describe(self) -> str:
        """The form in words for tables and run records: empty, this loss has one form only."""
        return ""

    def logit(self, distance: Tensor) -> Tensor:
        """Map a distance map to change logits: `scale * distance + offset`."""
        return self.scale * distance + self.offset

    def decision_distance(self) -> Tensor:
        """The distance at which the logit is 0 (probability 0.5): `-offset / scale`."""
        return (-self.offset / self.scale).detach()

    def evaluation_score(self, output: ChangeOutput) -> Tensor:
        """sigmoid(scale * d + offset) with the learned scale and offset, float32: the
        probability this loss trained, thresholded at `thresholds.probability`."""
        return torch.sigmoid(self.logit(output.score.float()))

    def forward(self, output: ChangeOutput, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the BCE loss and its detached parts.

        Args:
            output: BSFNet's output; `score` is the (B, 1, H, W) distance map.
            mask: (B, 1, H, W) change mask in {0, 1}, any integer, float or bool dtype.

        Returns:
            `(total, parts)` with parts `bce`, `scale` and `offset`.
        """
        distance, target = distance_and_target(output, mask, "bce")
        bce = F.binary_cross_entropy_with_logits(self.logit(distance), target)
        # clone: a detached view of a parameter would change under the optimiser's in-place step
        parts = {
            "bce": bce.detach(),
            "scale": self.scale.detach().clone(),
            "offset": self.offset.detach().clone(),
        }
        return bce, parts
