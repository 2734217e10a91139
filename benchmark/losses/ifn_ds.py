"""IFN's deep-supervision loss: BCE (+ Dice) on each of the five side outputs.

Paper: Zhang et al., "A deeply supervised image fusion network for change detection in high
resolution bi-temporal remote sensing images", ISPRS J. Photogramm. Remote Sens. 166 (2020).
See also /work/shared/reference/ifn.md. With z_k the k-th side logit (coarsest first, 1/16 ...
1/1 of the input; `output.side_logits`) upsampled to the mask's size, y the {0, 1} mask,
p_k = sigmoid(z_k) (applied once), sums over every pixel of the batch, and w_k the weights:

    bce_k  = mean(BCEWithLogits(z_k, y))
    dice_k = 1 - (2 * sum(p_k * y) + 1) / (sum(p_k) + sum(y) + 1)        (smooth = 1)
    total  = sum_k w_k * (bce_k + dice_k)           (dice_k = 0 when dice=False)

Dice is computed over the whole batch (one ratio of sums), as the authors' code does (it
flattens the batch with `view(-1)`); CDLab averages per-sample ratios instead.

The three sources, and which options reproduce which:
- Authors, `GeoZcx/A-deeply-supervised-image-fusion-network-for-change-detection-in-remote-
  sensing-images`, `pytorch version/loss.py` (`cd_loss`) with `pytorch version/DSIFN.py`: the model
  already ends in a sigmoid, and the loss applies `torch.sigmoid` again before `BCELoss` (a bug,
  their issue #1). The stored versions of the file differ in the BCE's arguments:
  `BCELoss()(torch.sigmoid(input), target)` (commit 0ddad933) and `BCELoss()(torch.log(input),
  torch.log(target))` (commit d3eed451); issue #1 (October 2020) quotes one that also passed the
  target through a sigmoid. Their order could not be established. Its Dice uses the model's
  probabilities once, with the factor 2 and smooth 1, over the whole batch; equal weights; the
  release has no training script, so how outputs and label are brought to one size is not shown.
  `dice=True` is this loss without the double sigmoid. (Their `Keras version/loss.py` also applies a
  sigmoid to both label and prediction.)
- open-cd (`likyoo/open-cd`, `configs/_base_/models/ifn.py`, `configs/ifn/`, and
  `DSIdentityHead.loss_by_feat` in `opencd/models/decode_heads/identity_head.py`): each output
  resized bilinearly (align_corners=False) to the label size, `CrossEntropyLoss(use_sigmoid=
  True)` weight 1, no Dice. Reproduced exactly by `dice=False, upsample="bilinear"`.
- CDLab (`Bobholamovic/CDLab`, `configs/svcd/config_svcd_ifn.yaml`: criterion "WBCE+Dice", with the
  class weights 0.5/0.5 of `configs/svcd/config_svcd.yaml`, so `pos_weight` = 1, i.e. plain BCE with
  logits; `mix_coeffs: 1.0`, BCE and Dice weighted 1 each; `cmb_coeffs: 1.0`, each output weighted
  1; `src/utils/losses.py` `DiceLoss`, `MixedLoss`, `CombinedLoss`;
  `src/impl/builders/critn_builders.py`; `src/impl/trainers/ifn_trainer.py`): each output
  nearest-upsampled (`F.interpolate` default) to full size, BCE-with-logits + a Dice without the
  factor 2 and with squared terms in the denominator,
  1 - (sum(p y) + 1) / (sum(p^2) + sum(y^2) + 1), averaged over samples.
  `dice=True, upsample="nearest"` is the closest: same BCE and upsampling, but this module's
  (authors') Dice, not CDLab's.

Departures, and why: sigmoid once (the double sigmoid is a bug, not a recipe); logits are
upsampled to the label, never the label downsampled; computed in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.losses.labels import check_binary_labels
from benchmark.models.output import ChangeOutput

DICE_SMOOTH = 1.0
"""Added to the Dice numerator and denominator (authors' `smooth = 1.`)."""


class DeepSupervisionLoss(nn.Module):
    """Weighted sum over IFN's side outputs of BCE-with-logits plus (optionally) Dice.

    Args:
        weights: one non-negative weight per side output, coarsest first (1/16 ... 1/1); the
            model must return exactly this many side logits.
        dice: add the Dice term (authors, CDLab) or not (open-cd).
        upsample: how side logits are resized to the label: "bilinear" (align_corners=False,
            open-cd) or "nearest" (CDLab).

    Raises:
        ValueError: for no weights, a negative weight or an unknown `upsample` mode.
    """

    def __init__(
        self,
        weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.0),
        dice: bool = True,
        upsample: Literal["bilinear", "nearest"] = "bilinear",
    ) -> None:
        super().__init__()
        weights = tuple(float(w) for w in weights)
        if not weights or any(w < 0 for w in weights):
            raise ValueError(f"weights: expected one or more weights >= 0, got {list(weights)}")
        if upsample not in ("bilinear", "nearest"):
            raise ValueError(f"upsample: expected 'bilinear' or 'nearest', got {upsample!r}")
        self.weights = weights
        self.dice = dice
        self.upsample = upsample

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
            if self.dice:
                dice = dice_loss(torch.sigmoid(logit), target)
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


def dice_loss(probability: Tensor, target: Tensor) -> Tensor:
    """1 - (2 sum(p t) + 1) / (sum(p) + sum(t) + 1), sums over the whole batch.

    Args:
        probability: probabilities in [0, 1] (a sigmoid already applied, once).
        target: {0, 1} mask of the same shape.

    Returns:
        A differentiable scalar in [0, 1).
    """
    intersection = (probability * target).sum()
    denominator = probability.sum() + target.sum() + DICE_SMOOTH
    return 1 - (2 * intersection + DICE_SMOOTH) / denominator
