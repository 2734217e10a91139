"""IFN's deep-supervision loss: BCE (+ a Dice form) on each of the five side outputs.

Paper: Zhang et al., "A deeply supervised image fusion network for change detection in high
resolution bi-temporal remote sensing images", ISPRS J. Photogramm. Remote Sens. 166 (2020).
With z_k the k-th side logit (coarsest first, 1/16 ... 1/1 of the input; `output.side_logits`)
resized to the mask's size, y the {0, 1} mask, p_k = sigmoid(z_k) (applied once), and w_k the
weights:

    bce_k  = mean over every pixel of the batch of BCEWithLogits(z_k, y)
    total  = sum_k w_k * (bce_k + dice_k)

and dice_k one of three forms (`dice=`), smooth = 1:

    "none":    dice_k = 0                                                           (open-cd)
    "geozcx":  dice_k = 1 - (2 sum(p_k y) + 1) / (sum(p_k) + sum(y) + 1),
               sums over the whole batch (one ratio)                 (the authors, GeoZcx)
    "cdlab":   dice_k = mean over samples b of 1 - (sum_b(p_k y) + 1) / (sum_b(p_k^2 + y^2) + 1),
               sums over one sample's pixels; no factor 2, squares in the denominator  (CDLab)

The three sources, and which options reproduce which:
- Authors, GeoZcx/A-deeply-supervised-image-fusion-network-for-change-detection-in-remote-sensing-
  images, `pytorch version/loss.py` (`cd_loss`; current version commit 0ddad93, 2023-12-21).
  `dice="geozcx"` is its Dice: the model's probabilities once, factor 2, smooth 1, one ratio over
  the flattened batch (`view(-1)`). Its BCE differs from ours: their `DSIFN.py` already ends in
  a sigmoid and `cd_loss` computes `BCELoss()(torch.sigmoid(input), target)`, i.e. BCE of
  sigmoid(sigmoid(z)) (their issue #1). Ours is BCE of sigmoid(z), once: the doubled sigmoid
  squeezes every probability into [0.5, 0.731], so even a perfect prediction costs at least
  ln 2 on every unchanged pixel and -ln 0.731 = 0.313 on every changed one - a bug, not a recipe
  (pinned by `tests/test_losses.py`). Their release has no training script: how outputs and
  label are brought to one size is not shown; weights are equal.
- open-cd (likyoo/open-cd, `configs/_base_/models/ifn.py`, `configs/ifn/`,
  `DSIdentityHead.loss_by_feat` in `opencd/models/decode_heads/identity_head.py`): each output
  resized bilinearly (align_corners=False) to the label, `CrossEntropyLoss(use_sigmoid=True)`
  weight 1, no Dice. Exactly `dice="none", upsample="bilinear"`.
- CDLab (Bobholamovic/CDLab): `configs/svcd/config_svcd_ifn.yaml` sets criterion "WBCE+Dice",
  `mix_coeffs: 1.0` and `cmb_coeffs: 1.0`; `configs/svcd/config_svcd.yaml` the class weights
  0.5/0.5, so `src/impl/builders/critn_builders.py`'s WBCE is `BCEWithLogitsLoss(pos_weight=1)`,
  plain BCE with logits, and its Dice is `src/utils/losses.py` `DiceLoss()` (smooth 1, p = 2,
  per sample: `flatten(1)`, then `mean()` over the batch). `MixedLoss` adds BCE and Dice with
  weight 1 each and `CombinedLoss` sums that over the five outputs with weight 1 each;
  `src/impl/trainers/ifn_trainer.py` first resizes every output to the size of the finest one
  (`F.interpolate`, default mode nearest), which is the label's size. Exactly
  `dice="cdlab", upsample="nearest"` with the default weights (1, 1, 1, 1, 1).

Departures, and why: sigmoid once (above); logits are resized to the label, never the label to
the logits; computed in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.losses.base import ChangeLoss, ScoreKind
from benchmark.losses.labels import check_binary_labels
from benchmark.models.output import ChangeOutput, OutputName

DICE_SMOOTH = 1.0
"""Added to the Dice numerator and denominator (GeoZcx's `smooth = 1.`, CDLab's `smooth=1`)."""

DiceForm = Literal["none", "geozcx", "cdlab"]
DICE_FORMS: tuple[str, ...] = ("none", "geozcx", "cdlab")
"""The Dice forms `DeepSupervisionLoss` offers (see the module docstring)."""


class DeepSupervisionLoss(ChangeLoss):
    """Weighted sum over IFN's side outputs of BCE-with-logits plus a Dice form.

    Args:
        weights: one non-negative weight per side output, coarsest first (1/16 ... 1/1); the
            model must return exactly this many side logits.
        dice: "none" (open-cd), "geozcx" (the authors' batch-global Dice with the factor 2) or
            "cdlab" (CDLab's per-sample Dice, no factor 2, squared denominator).
        upsample: how side logits are resized to the label: "bilinear" (align_corners=False,
            open-cd) or "nearest" (CDLab).

    Raises:
        ValueError: for no weights, a negative weight, an unknown `dice` form (true/false
            included: the form must be named) or an unknown `upsample` mode.
    """

    needs: ClassVar[frozenset[OutputName]] = frozenset({"logit", "side_logits"})
    score_kind: ClassVar[ScoreKind] = "probability"

    def __init__(
        self,
        weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.0),
        dice: DiceForm = "geozcx",
        upsample: Literal["bilinear", "nearest"] = "bilinear",
    ) -> None:
        super().__init__()
        weights = tuple(float(w) for w in weights)
        if not weights or any(w < 0 for w in weights):
            raise ValueError(f"weights: expected one or more weights >= 0, got {list(weights)}")
        if isinstance(dice, bool) or dice not in DICE_FORMS:
            hint = (
                " (name the form: true was 'geozcx', false 'none')"
                if isinstance(dice, bool)
                else ""
            )
            raise ValueError(
                f"dice: expected one of {', '.join(map(repr, DICE_FORMS))}, got {dice!r}{hint}"
            )
        if upsample not in ("bilinear", "nearest"):
            raise ValueError(f"upsample: expected 'bilinear' or 'nearest', got {upsample!r}")
        self.weights = weights
        self.dice: DiceForm = dice
        self.upsample = upsample

    def describe(self) -> str:
        """The form in words, for tables and run records, e.g. "BCE + CDLab Dice, nearest"."""
        dice = {"none": "BCE", "geozcx": "BCE + GeoZcx Dice", "cdlab": "BCE + CDLab Dice"}
        return f"{dice[self.dice]}, {self.upsample}"

    def evaluation_score(self, output: ChangeOutput) -> Tensor:
        """sigmoid of the full-resolution logit (`output.score`, the finest side output),
        float32, thresholded at `thresholds.probability`."""
        return torch.sigmoid(output.score.float())

    def forward(self, output: ChangeOutput, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the total loss and its detached parts.

        Args:
            output: IFN's output; `side_logits` holds the deep-supervision logits, each
                (B, 1, h, w), coarsest first.
            mask: (B, 1, H, W) change mask in {0, 1}, any integer, float or bool dtype.

        Returns:
            `(total, parts)`. Parts: `bce_k` and `dice_k` for each side output k (0 = coarsest,
            unweighted), and their weighted sums `bce` and `dice` (`total = bce + dice`).

        Raises:
            ValueError: if `side_logits` is missing, their number differs from the number of
                weights, or their shapes do not fit the mask.
        """
        sides = self._check_sides(output, mask)
        target = check_binary_labels(mask)
        parts: dict[str, Tensor] = {}
        bce_total = target.new_zeros(())
        dice_total = target.new_zeros(())
        for k, (weight, side) in enumerate(zip(self.weights, sides, strict=True)):
            logit = self._to_label_size(side.float(), target.shape[-2:])
            bce = F.binary_cross_entropy_with_logits(logit, target)
            bce_total = bce_total + weight * bce
            parts[f"bce_{k}"] = bce.detach()
            if self.dice != "none":
                form = geozcx_dice_loss if self.dice == "geozcx" else cdlab_dice_loss
                dice = form(torch.sigmoid(logit), target)
                dice_total = dice_total + weight * dice
                parts[f"dice_{k}"] = dice.detach()
        parts["bce"] = bce_total.detach()
        parts["dice"] = dice_total.detach()
        return bce_total + dice_total, parts

    def _check_sides(self, output: ChangeOutput, mask: Tensor) -> tuple[Tensor, ...]:
        """Return `output.side_logits` after checking their number and shapes."""
        if mask.dim() != 4 or mask.shape[1] != 1:
            raise ValueError(
                f"loss 'ifn_ds': expected a (B, 1, H, W) mask, got shape {tuple(mask.shape)}"
            )
        sides = output.side_logits
        if sides is None:
            raise ValueError(
                "loss 'ifn_ds' needs output.side_logits (the deep-supervision logits IFN "
                "returns); got None. A distance model such as BSFNet needs 'sisb', "
                "'contrastive' or 'bce'."
            )
        if len(sides) != len(self.weights):
            raise ValueError(
                f"loss 'ifn_ds': got {len(sides)} side outputs but {len(self.weights)} weights "
                f"{list(self.weights)}; give one weight per side output"
            )
        for k, side in enumerate(sides):
            if side.dim() != 4 or side.shape[1] != 1 or side.shape[0] != mask.shape[0]:
                raise ValueError(
                    f"loss 'ifn_ds': side output {k} has shape {tuple(side.shape)}; expected "
                    f"(B, 1, h, w) with B = {mask.shape[0]} as in the mask {tuple(mask.shape)}"
                )
        return tuple(sides)

    def _to_label_size(self, logit: Tensor, size: torch.Size) -> Tensor:
        """Resize a (B, 1, h, w) logit map to the label's (H, W) unless it already has it."""
        if logit.shape[-2:] == size:
            return logit
        if self.upsample == "bilinear":
            return F.interpolate(logit, size=size, mode="bilinear", align_corners=False)
        return F.interpolate(logit, size=size, mode="nearest")


def geozcx_dice_loss(probability: Tensor, target: Tensor) -> Tensor:
    """1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1), sums over the whole batch (GeoZcx).

    Args:
        probability: probabilities in [0, 1] (a sigmoid already applied, once).
        target: {0, 1} mask of the same shape.

    Returns:
        A differentiable scalar in [0, 1).
    """
    intersection = (probability * target).sum()
    denominator = probability.sum() + target.sum() + DICE_SMOOTH
    return 1 - (2 * intersection + DICE_SMOOTH) / denominator


def cdlab_dice_loss(probability: Tensor, target: Tensor) -> Tensor:
    """Mean over samples of 1 - (sum(p t) + 1) / (sum(p^2 + t^2) + 1) (CDLab's `DiceLoss`).

    Sums run over one sample's pixels (dimension 0 is the batch); no factor 2 in the numerator
    and squares in the denominator, as CDLab's `DiceLoss(smooth=1, p=2)`.

    Args:
        probability: (B, ...) probabilities in [0, 1] (a sigmoid already applied, once).
        target: {0, 1} mask of the same shape.

    Returns:
        A differentiable scalar in [0, 1).
    """
    p, t = probability.flatten(1), target.flatten(1)
    numerator = (p * t).sum(dim=1) + DICE_SMOOTH
    denominator = (p.pow(2) + t.pow(2)).sum(dim=1) + DICE_SMOOTH
    return (1 - numerator / denominator).mean()
