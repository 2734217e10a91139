"""Plain (unbalanced) contrastive loss on BSFNet's distance map: the "no balancing" arm.

Checked against the authors' code, ClarissaDHL/BSFNet branch `master`, `utils/loss.py`, class
`contrastive_loss` (defined there, not used by `cd_code/bsfnet_cd.py`). With d the distance
(`output.score`), y the {0, 1} mask, N the number of pixels in the batch and w the
`changed_weight`:

    contrastive_unchanged = sum((1 - y) * max(d - m_u, 0)^2) / N,       m_u = 0.1
    contrastive_changed   = w * sum(y * max(m_c - d, 0)^2) / N,         m_c = 2.0
    total = contrastive_unchanged + contrastive_changed

Two forms, named in tables and run records by `describe()`:
- w = 1 (default), "plain": the standard contrastive loss, the mean over all pixels, with the
  margins of `SISBLoss`, so that between the two ablation arms only the per-class
  normalisation (and SISB's IoU term) differs. A fixed weight would be a crude class balancing
  and blur that comparison: this is the ablation's form, on purpose.
- w = 10, "released": the released `contrastive_loss` exactly (it multiplies the changed term
  by 10.0 and divides both sums by `np.prod(label.size())`, the batch's pixel count).

No epsilon is needed: N is at least 1. Departures from the released class, in both forms:
- It recomputes d from the embeddings as sqrt(sum_c (|e0 - e1| + 1e-6)^2); here d is
  `output.score` (at most 8e-6 apart for 16 channels; see `benchmark.losses.sisb`).
- Labels must be exactly {0, 1}; computed in float32.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from benchmark.losses.base import ChangeLoss, ScoreKind
from benchmark.losses.labels import distance_and_target
from benchmark.models.output import ChangeOutput, OutputName

RELEASED_CHANGED_WEIGHT = 10.0
"""The weight the released `contrastive_loss` gives its changed term (`* 10.0`)."""


class ContrastiveLoss(ChangeLoss):
    """Mean over all pixels of the margin contrastive loss on a distance map.

    Args:
        margin_unchanged: unchanged pixels are pulled below this distance (0.1, as SISB).
        margin_changed: changed pixels are pushed above this distance (2.0, as SISB).
        changed_weight: weight of the changed term: 1.0 is the plain form, 10.0 the released
            `contrastive_loss`.

    Raises:
        ValueError: for a negative margin or a non-positive `changed_weight`.
    """

    needs: ClassVar[frozenset[OutputName]] = frozenset({"distance"})
    score_kind: ClassVar[ScoreKind] = "distance"

    def __init__(
        self,
        margin_unchanged: float = 0.1,
        margin_changed: float = 2.0,
        changed_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if margin_unchanged < 0 or margin_changed < 0:
            raise ValueError(
                f"margins must be >= 0; got margin_unchanged={margin_unchanged}, "
                f"margin_changed={margin_changed}"
            )
        if not changed_weight > 0:
            raise ValueError(
                f"changed_weight: expected > 0 (1.0 plain, 10.0 as released), got {changed_weight}"
            )
        self.margin_unchanged = margin_unchanged
        self.margin_changed = margin_changed
        self.changed_weight = float(changed_weight)

    def describe(self) -> str:
        """The form in words, for tables and run records: "plain", "changed ×10, released"."""
        if self.changed_weight == RELEASED_CHANGED_WEIGHT:
            return f"changed ×{self.changed_weight:g}, released"
        if self.changed_weight == 1.0:
            return "plain"
        return f"changed ×{self.changed_weight:g}"

    def evaluation_score(self, output: ChangeOutput) -> Tensor:
        """The distance itself, float32, thresholded at `thresholds.distance`, as for SISB."""
        return output.score.float()

    def forward(self, output: ChangeOutput, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the total loss and its detached parts.

        Args:
            output: BSFNet's output; `score` is the (B, 1, H, W) distance map.
            mask: (B, 1, H, W) change mask in {0, 1}, any integer, float or bool dtype.

        Returns:
            `(total, parts)` with parts `contrastive_unchanged` and `contrastive_changed`
            (both divided by the number of pixels, the changed one weighted by
            `changed_weight`, so they sum to the total).
        """
        distance, target = distance_and_target(output, mask, "contrastive")
        n_pixels = target.numel()
        pull = torch.clamp(distance - self.margin_unchanged, min=0).pow(2)
        push = torch.clamp(self.margin_changed - distance, min=0).pow(2)
        unchanged = ((1 - target) * pull).sum() / n_pixels
        changed = self.changed_weight * (target * push).sum() / n_pixels
        parts = {
            "contrastive_unchanged": unchanged.detach(),
            "contrastive_changed": changed.detach(),
        }
        return unchanged + changed, parts
