"""BSFNet's training loss: batch-balanced contrastive term + IoU term ("SISB").

Paper: the BSFNet letter (IEEE Geoscience and Remote Sensing Letters); it calls its training
loss SISB (scale-invariant, sample-balanced). Checked against the authors' released
code, `ClarissaDHL/BSFNet` branch `master`: `utils/loss.py` (classes `BCL_v2` and
`IOUloss_v1`) and `cd_code/bsfnet_cd.py` (`loss = BCL_v2(...) + IOUloss_v1(...)`, labels
divided by 255 before the loss).

With d the per-pixel distance between the two dates' embeddings (`output.score`, in [0, 2]),
y the {0, 1} mask, sums over every pixel of the batch, and e = 1e-4:

    N_u = sum(1 - y) + e,    N_c = sum(y) + e                    (whole batch, as released)
    contrastive_unchanged = sum((1 - y) * max(d - m_u, 0)^2) / N_u,      m_u = 0.1
    contrastive_changed   = sum(y * max(m_c - d, 0)^2) / N_c,            m_c = 2.0
    iou (hard) = 1 - |{d > t} & {y = 1}| / |{d > t} | {y = 1}|,           t = 1.0
    iou (soft) = 1 - sum(p * y) / (sum(p) + sum(y) - sum(p * y)),   p = clamp(d / (2 t), 0, 1)
    total = contrastive_unchanged + contrastive_changed + iou_weight * iou

The e = 1e-4 keeps an all-changed or a no-changed batch finite (its empty class contributes
0 / 1e-4 = 0). The hard IoU is computed on boolean maps, exactly as released: it has no
gradient, so in hard mode only the contrastive part trains the network and the IoU part only
moves the logged value. The soft IoU is the differentiable reading of "scale-invariant".

Why p = clamp(d / (2 t), 0, 1) for the soft IoU: it needs no temperature hyperparameter, it
is exactly 0.5 at the released decision threshold d = t = 1, it reaches 0 and 1 at the two
contrastive targets (d = 0 and d = 2), and its gradient never vanishes inside [0, 2] (a
sigmoid((d - 1) / tau) saturates for confidently wrong pixels, which are the ones that matter).
The clamp only acts on rounding excursions outside [0, 2].

Departures from the released code, and why:
- Distance. `BCL_v2` recomputes d from the two embeddings as sqrt(sum_c (|e0 - e1| + 1e-6)^2)
  and `IOUloss_v1` as sqrt(sum_c (e0 - e1 + 1e-6)^2) (no abs). Here d is `output.score`, the
  distance the evaluation thresholds (benchmark/models/bsfnet.py computes it as IOUloss_v1
  does, i.e. `F.pairwise_distance` with its 1e-6), so training and evaluation see one d and the
  loss works on any distance model. By the triangle inequality each of these differs from the
  exact Euclidean distance by at most sqrt(C) * 1e-6 = 4e-6 for C = 16 channels (so from each
  other by at most 8e-6), far below the margins (0.1) and near float32 resolution at d = 1.
  `output.embeddings` is therefore not used.
- A batch with no changed pixel, or more exactly an empty union in the hard IoU (no pixel
  predicted changed, d <= 1 everywhere, and none truly changed): the released `IOUloss_v1`
  divides 0 by 0, so the released total is NaN, although its gradient is finite (the IoU term
  is built from boolean maps and carries none; `BCL_v2`'s empty class is 0 / 1e-4 = 0). Here
  that IoU term is 0 (the prediction agrees perfectly: nothing changed, nothing predicted), so
  the total is the finite contrastive part (e.g. 0.738 where the released code gives NaN) with
  the released gradient. Why not keep NaN: the trainer stops at the first non-finite loss and
  a NaN would make every logged mean NaN, while the network's update is the released one either
  way. Same rule for the soft IoU. Pinned by `tests/test_losses.py`.
- Labels: the released code divides 0/255 labels by 255, so CDD's JPEG-damaged values (e.g. 254)
  become fractions that the contrastive sums weight but the counts `label == 1` ignore. Here the
  mask must be exactly {0, 1} (`check_binary_labels`); binarising is the data stage's job.
- The loss is computed in float32 whatever the score's dtype (safe under autocast).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from benchmark.losses.base import ChangeLoss, ScoreKind
from benchmark.losses.labels import distance_and_target
from benchmark.models.output import ChangeOutput, OutputName

COUNT_EPS = 1e-4
"""Added to each class's pixel count (released `BCL_v2`: `+ 0.0001`)."""


class SISBLoss(ChangeLoss):
    """Batch-balanced contrastive loss + IoU loss on BSFNet's distance map.

    Args:
        margin_unchanged: unchanged pixels are pulled below this distance (released: 0.1).
        margin_changed: changed pixels are pushed above this distance (released: 2.0).
        iou: "hard" as released (boolean maps, no gradient) or "soft" (differentiable).
        iou_threshold: the distance above which a pixel counts as changed (released: 1.0).
        iou_weight: weight of the IoU term in the total (released: 1.0).

    Raises:
        ValueError: for a negative margin or weight, a non-positive threshold or an unknown
            `iou` mode.
    """

    needs: ClassVar[frozenset[OutputName]] = frozenset({"distance"})
    score_kind: ClassVar[ScoreKind] = "distance"

    def __init__(
        self,
        margin_unchanged: float = 0.1,
        margin_changed: float = 2.0,
        iou: Literal["hard", "soft"] = "hard",
        iou_threshold: float = 1.0,
        iou_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if iou not in ("hard", "soft"):
            raise ValueError(f"iou: expected 'hard' or 'soft', got {iou!r}")
        if margin_unchanged < 0 or margin_changed < 0:
            raise ValueError(
                f"margins must be >= 0; got margin_unchanged={margin_unchanged}, "
                f"margin_changed={margin_changed}"
            )
        if iou_threshold <= 0:
            raise ValueError(f"iou_threshold: expected a distance > 0, got {iou_threshold}")
        if iou_weight < 0:
            raise ValueError(f"iou_weight: expected >= 0, got {iou_weight}")
        self.margin_unchanged = margin_unchanged
        self.margin_changed = margin_changed
        self.iou = iou
        self.iou_threshold = iou_threshold
        self.iou_weight = iou_weight

    def describe(self) -> str:
        """The form in words, for tables and run records: "hard IoU, released" or "soft IoU"."""
        released = (
            self.iou == "hard"
            and (self.margin_unchanged, self.margin_changed) == (0.1, 2.0)
            and (self.iou_threshold, self.iou_weight) == (1.0, 1.0)
        )
        return "hard IoU, released" if released else f"{self.iou} IoU"

    def evaluation_score(self, output: ChangeOutput) -> Tensor:
        """The distance itself, float32, thresholded at `thresholds.distance` (the released
        test script predicts change where d > 1)."""
        return output.score.float()

    def forward(self, output: ChangeOutput, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the total loss and its detached parts.

        Args:
            output: BSFNet's output; `score` is the (B, 1, H, W) distance map.
            mask: (B, 1, H, W) change mask in {0, 1}, any integer, float or bool dtype.

        Returns:
            `(total, parts)` with parts `contrastive_unchanged`, `contrastive_changed`, `iou`.
        """
        distance, target = distance_and_target(output, mask, "sisb")
        unchanged, changed = balanced_contrastive_terms(
            distance, target, self.margin_unchanged, self.margin_changed
        )
        if self.iou == "hard":
            iou = hard_iou_loss(distance, target, self.iou_threshold)
        else:
            iou = soft_iou_loss(distance, target, self.iou_threshold)
        total = unchanged + changed + self.iou_weight * iou
        parts = {
            "contrastive_unchanged": unchanged.detach(),
            "contrastive_changed": changed.detach(),
            "iou": iou.detach(),
        }
        return total, parts


def balanced_contrastive_terms(
    distance: Tensor, target: Tensor, margin_unchanged: float, margin_changed: float
) -> tuple[Tensor, Tensor]:
    """The two class-normalised contrastive sums (released `BCL_v2`).

    Args:
        distance: float distance map, any shape.
        target: float {0, 1} mask, the shape of `distance`.
        margin_unchanged: hinge below which an unchanged pixel costs nothing.
        margin_changed: hinge above which a changed pixel costs nothing.

    Returns:
        `(unchanged_term, changed_term)`, scalars; each class is divided by its own pixel
        count over the whole batch plus `COUNT_EPS`.
    """
    n_unchanged = (1 - target).sum() + COUNT_EPS
    n_changed = target.sum() + COUNT_EPS
    pull = torch.clamp(distance - margin_unchanged, min=0).pow(2)
    push = torch.clamp(margin_changed - distance, min=0).pow(2)
    return ((1 - target) * pull).sum() / n_unchanged, (target * push).sum() / n_changed


def hard_iou_loss(distance: Tensor, target: Tensor, threshold: float) -> Tensor:
    """1 - IoU of the boolean maps {distance > threshold} and {target = 1}, over the batch.

    Carries no gradient (as released). An empty union gives 0.

    Args:
        distance: distance map, any shape.
        target: {0, 1} mask, the shape of `distance`.
        threshold: distance above which a pixel is predicted changed (strict `>`, as released).

    Returns:
        A float32 scalar without gradient.
    """
    predicted = distance.detach() > threshold
    true = target.detach() > 0.5
    intersection = (predicted & true).sum().float()
    union = (predicted | true).sum().float()
    return _one_minus_ratio(intersection, union)


def soft_iou_loss(distance: Tensor, target: Tensor, threshold: float) -> Tensor:
    """1 - soft IoU with p = clamp(distance / (2 threshold), 0, 1), over the batch.

    Args:
        distance: float distance map, any shape.
        target: float {0, 1} mask, the shape of `distance`.
        threshold: the distance mapped to p = 0.5.

    Returns:
        A differentiable scalar; 0 when the soft union is empty.
    """
    p = torch.clamp(distance / (2 * threshold), 0, 1)
    intersection = (p * target).sum()
    union = p.sum() + target.sum() - intersection
    return _one_minus_ratio(intersection, union)


def _one_minus_ratio(intersection: Tensor, union: Tensor) -> Tensor:
    """1 - intersection / union, and 0 where union is 0, without NaN values or gradients."""
    nonempty = union > 0
    safe_union = torch.where(nonempty, union, torch.ones_like(union))
    return torch.where(nonempty, 1 - intersection / safe_union, torch.zeros_like(union))
