"""The losses against their sources' formulas.

Every expected value is derived by hand in the comments and computed with plain Python `math`;
where a source's whole pipeline is restated (CDLab's IFN criterion, BSFNet's released
`contrastive_loss` and `BCL_v2 + IOUloss_v1`), the restatement is written here, op by op, from
reading the authors' code, never by calling the code under test. Sources:
- CDLab (Bobholamovic/CDLab): `src/utils/losses.py` `DiceLoss`, `MixedLoss`, `CombinedLoss`;
  `src/impl/builders/critn_builders.py`; `src/impl/trainers/ifn_trainer.py`;
  `configs/svcd/config_svcd_ifn.yaml`, `configs/svcd/config_svcd.yaml`.
- GeoZcx (A-deeply-supervised-image-fusion-network-...): `pytorch version/loss.py` `cd_loss`.
- BSFNet (ClarissaDHL/BSFNet, branch master): `utils/loss.py`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.config import ExperimentConfig, load_params
from benchmark.errors import ConfigError
from benchmark.losses import (
    ContrastiveLoss,
    DeepSupervisionLoss,
    SISBLoss,
    build_loss,
    describe_loss,
)
from benchmark.models.output import ChangeOutput

REPO = Path(__file__).resolve().parents[1]
EPS = 1e-4  # BCL_v2's + 0.0001 on each class count


def logit_output(*sides: Tensor) -> ChangeOutput:
    return ChangeOutput(score=sides[-1], score_kind="logit", side_logits=tuple(sides))


def distance_output(distance: Tensor) -> ChangeOutput:
    return ChangeOutput(score=distance, score_kind="distance")


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# ----------------------------------------------------------------------------- IFN: Dice forms

# A batch of two 1 x 2 images whose sigmoids are easy to write down:
#   sample A: z = [ln 3, -ln 3] -> p = [0.75, 0.25],  y = [1, 0]
#   sample B: z = [0, ln 9]     -> p = [0.5, 0.9],    y = [0, 1]
Z_BATCH = torch.tensor([[[[math.log(3), -math.log(3)]]], [[[0.0, math.log(9)]]]])
Y_BATCH = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])
# BCE (both forms, mean over the 4 pixels): (-ln 0.75 - ln 0.75 - ln 0.5 - ln 0.9) / 4
BCE_BATCH = (-2 * math.log(0.75) - math.log(0.5) - math.log(0.9)) / 4
# CDLab's Dice, per sample, numerator sum(p y) + 1, denominator sum(p^2 + y^2) + 1:
#   A: (0.75 + 1) / (0.75^2 + 0.25^2 + 1 + 1) = 1.75 / 2.625 = 2/3      -> 1 - 2/3
#   B: (0.9 + 1) / (0.5^2 + 0.9^2 + 1 + 1)    = 1.9 / 3.06               -> 1 - 1.9/3.06
#   averaged over the two samples
DICE_CDLAB = ((1 - 1.75 / 2.625) + (1 - 1.9 / 3.06)) / 2
# GeoZcx's Dice, one ratio over the batch: sum(p y) = 0.75 + 0.9 = 1.65, sum(p) = 2.4,
#   sum(y) = 2:  1 - (2 * 1.65 + 1) / (2.4 + 2 + 1) = 1 - 4.3 / 5.4
DICE_GEOZCX = 1 - 4.3 / 5.4


def test_cdlab_dice_form_matches_the_hand_value() -> None:
    loss = DeepSupervisionLoss(weights=(1.0,), dice="cdlab", upsample="nearest")
    total, parts = loss(logit_output(Z_BATCH), Y_BATCH)
    assert parts["bce_0"].item() == pytest.approx(BCE_BATCH, rel=1e-6)
    assert parts["dice_0"].item() == pytest.approx(DICE_CDLAB, rel=1e-6)
    assert total.item() == pytest.approx(BCE_BATCH + DICE_CDLAB, rel=1e-6)


def test_geozcx_and_cdlab_dice_differ_on_the_same_logits() -> None:
    # Side by side on identical logits: GeoZcx 1 - 4.3/5.4 = 0.2037, CDLab 0.3562.
    geozcx, _ = DeepSupervisionLoss(weights=(1.0,), dice="geozcx")(logit_output(Z_BATCH), Y_BATCH)
    cdlab, _ = DeepSupervisionLoss(weights=(1.0,), dice="cdlab")(logit_output(Z_BATCH), Y_BATCH)
    assert geozcx.item() == pytest.approx(BCE_BATCH + DICE_GEOZCX, rel=1e-6)
    assert cdlab.item() == pytest.approx(BCE_BATCH + DICE_CDLAB, rel=1e-6)
    assert abs(DICE_CDLAB - DICE_GEOZCX) > 0.15
    # CDLab's ratio is per sample: pooling the two samples' sums into one ratio would give
    # 1 - (1.65 + 1) / (0.5625 + 0.0625 + 0.25 + 0.81 + 2 + 1) = 1 - 2.65 / 4.685, not the mean.
    assert abs(DICE_CDLAB - (1 - 2.65 / 4.685)) > 0.01


def test_cdlab_form_sums_bce_and_dice_over_nearest_upsampled_outputs() -> None:
    # A coarse output, logit 0 at 1 x 1 per sample, nearest-upsampled to 1 x 2: p = 0.5 on all.
    #   BCE = ln 2; Dice per sample: (0.5 + 1) / (0.25 + 0.25 + 1 + 1) = 1.5 / 2.5 -> 0.4 each
    # CDLab's weights: 1 for BCE and Dice (mix_coeffs), 1 for every output (cmb_coeffs).
    coarse = torch.zeros(2, 1, 1, 1)
    loss = DeepSupervisionLoss(weights=(1.0, 1.0), dice="cdlab", upsample="nearest")
    total, parts = loss(logit_output(coarse, Z_BATCH), Y_BATCH)
    assert parts["dice_0"].item() == pytest.approx(0.4, rel=1e-6)
    expected = (math.log(2) + 0.4) + (BCE_BATCH + DICE_CDLAB)
    assert total.item() == pytest.approx(expected, rel=1e-6)


def cdlab_ifn_criterion(outputs: tuple[Tensor, ...], label: Tensor) -> Tensor:
    """CDLab's IFN training loss, restated from its code: `IFNTrainer._process_model_out`
    resizes each output to the size of `out[0]` (the finest, `F.interpolate` default mode) and
    squeezes the channel; `CombinedLoss(MixedLoss([WBCE, Dice], 1.0), 1.0)` sums, per output,
    BCEWithLogits(pos_weight = 0.5 / 0.5) + DiceLoss(smooth 1, p 2)."""
    finest = outputs[-1].shape[2:]  # ours are coarsest first; CDLab's list starts at the finest
    tar = label.squeeze(1).float()
    total = torch.zeros((), dtype=torch.float64)
    for out in reversed(outputs):
        pred = F.interpolate(out, size=finest).squeeze(1)
        wbce = F.binary_cross_entropy_with_logits(pred, tar, pos_weight=torch.tensor([1.0]))
        prob, flat = torch.sigmoid(pred).flatten(1), tar.flatten(1)
        num = (prob * flat).sum(1) + 1
        den = (prob.pow(2) + flat.pow(2)).sum(1) + 1
        total = total + 1.0 * (1.0 * wbce + 1.0 * (1 - num / den).mean())
    return total


SCALES = (16, 8, 4, 2, 1)
"""IFN's side outputs: 1/16 ... 1/1 of the input, coarsest first."""


def params_experiment(name: str) -> ExperimentConfig:
    return load_params(REPO / "params.yaml").experiments[name]


def test_ifn_cdlab_experiment_trains_with_cdlabs_exact_loss() -> None:
    experiment = params_experiment("ifn-ds-cdd")
    assert experiment.recipe == "ifn-cdlab"
    loss = build_loss(experiment.loss, **experiment.loss_options)
    assert isinstance(loss, DeepSupervisionLoss)
    assert (loss.dice, loss.upsample, loss.weights) == ("cdlab", "nearest", (1.0,) * 5)
    # IFN's five side outputs for a 32 x 32 pair, batch 3, and a sparse mask
    generator = torch.Generator().manual_seed(0)
    sides = tuple(torch.randn(3, 1, 32 // s, 32 // s, generator=generator) for s in SCALES)
    mask = (torch.rand(3, 1, 32, 32, generator=generator) > 0.8).float()
    ours, _ = loss(logit_output(*sides), mask)
    assert ours.item() == pytest.approx(cdlab_ifn_criterion(sides, mask).item(), rel=1e-6)
    # the former setting (dice true = GeoZcx's Dice) is another loss on the same logits
    geozcx, _ = DeepSupervisionLoss(dice="geozcx", upsample="nearest")(logit_output(*sides), mask)
    assert abs(geozcx.item() - ours.item()) > 1e-2


def test_ifn_opencd_experiment_has_no_dice_and_bilinear_resizing() -> None:
    experiment = params_experiment("ifn-ds-levir-cd")
    assert experiment.recipe == "ifn-opencd"
    loss = build_loss(experiment.loss, **experiment.loss_options)
    assert (loss.dice, loss.upsample) == ("none", "bilinear")


# ----------------------------------------------------------------------------- IFN: GeoZcx's BCE

# One 2 x 2 image: z = [ln 3, -ln 3, 0, ln 9] -> p = [0.75, 0.25, 0.5, 0.9]; y = [1, 0, 0, 1]
Z_FINE = torch.tensor([[[[math.log(3), -math.log(3)], [0.0, math.log(9)]]]])
Y_FINE = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])


def test_ours_applies_the_sigmoid_once_where_geozcx_cd_loss_applies_it_twice() -> None:
    # GeoZcx's model ends in a sigmoid (p above) and `cd_loss` computes BCELoss(sigmoid(p), y):
    #   mean(-ln s(0.75), -ln(1 - s(0.25)), -ln(1 - s(0.5)), -ln s(0.9)),  s = sigmoid
    geozcx_bce = (
        -math.log(sigmoid(0.75))
        - math.log(1 - sigmoid(0.25))
        - math.log(1 - sigmoid(0.5))
        - math.log(sigmoid(0.9))
    ) / 4
    # ours: BCE of p itself, mean(-ln 0.75, -ln 0.75, -ln 0.5, -ln 0.9)
    ours_bce = (-2 * math.log(0.75) - math.log(0.5) - math.log(0.9)) / 4
    _, parts = DeepSupervisionLoss(weights=(1.0,), dice="geozcx")(logit_output(Z_FINE), Y_FINE)
    assert parts["bce_0"].item() == pytest.approx(ours_bce, rel=1e-6)
    assert abs(parts["bce_0"].item() - geozcx_bce) > 0.05
    # GeoZcx's Dice reads p once, as ours: 1 - (2 * 1.65 + 1) / (2.4 + 2 + 1)
    assert parts["dice_0"].item() == pytest.approx(1 - 4.3 / 5.4, rel=1e-6)


def test_geozcx_double_sigmoid_puts_a_floor_under_a_perfect_prediction() -> None:
    # Perfect logits (+-20): p = 1 on changed, 0 on unchanged pixels. GeoZcx's BCE sees
    # sigmoid(1) and sigmoid(0) = 0.5: -ln sigmoid(1) = 0.313 per changed pixel and
    # -ln(1 - 0.5) = ln 2 per unchanged one: mean (0.313 + 0.693) / 2 = 0.503 on Y_FINE.
    floor = (-math.log(sigmoid(1.0)) + math.log(2)) / 2
    assert floor == pytest.approx(0.503, abs=1e-3)
    z = torch.tensor([[[[20.0, -20.0], [-20.0, 20.0]]]])
    _, parts = DeepSupervisionLoss(weights=(1.0,), dice="geozcx")(logit_output(z), Y_FINE)
    assert parts["bce_0"].item() < 1e-6


# ----------------------------------------------------------------------------- IFN: the option


@pytest.mark.parametrize("value", [True, False, "cdlabb", "dice", None])
def test_dice_form_must_be_named(value: object) -> None:
    with pytest.raises(ConfigError, match=r"dice: expected one of 'none', 'geozcx', 'cdlab'"):
        build_loss("ifn_ds", dice=value)


# ----------------------------------------------------------------------------- contrastive

# d = [[0.05, 0.5], [1.5, 0.3]], y = [[0, 0], [1, 1]], N = 4 pixels
#   unchanged: max(0.05 - 0.1, 0)^2 + max(0.5 - 0.1, 0)^2 = 0 + 0.16
#   changed:   max(2 - 1.5, 0)^2 + max(2 - 0.3, 0)^2     = 0.25 + 2.89 = 3.14
D_EXAMPLE = torch.tensor([[[[0.05, 0.5], [1.5, 0.3]]]])
Y_EXAMPLE = torch.tensor([[[[0.0, 0.0], [1.0, 1.0]]]])


@pytest.mark.parametrize(
    ("changed_weight", "changed", "label"),
    [
        (1.0, 3.14 / 4, "contrastive (plain)"),  # 0.785
        (10.0, 10 * 3.14 / 4, "contrastive (changed ×10, released)"),  # 7.85
        (3.0, 3 * 3.14 / 4, "contrastive (changed ×3)"),
    ],
)
def test_contrastive_changed_weight_matches_hand_values(
    changed_weight: float, changed: float, label: str
) -> None:
    loss = build_loss("contrastive", changed_weight=changed_weight)
    total, parts = loss(distance_output(D_EXAMPLE), Y_EXAMPLE)
    assert parts["contrastive_unchanged"].item() == pytest.approx(0.16 / 4, rel=1e-6)
    assert parts["contrastive_changed"].item() == pytest.approx(changed, rel=1e-6)
    assert total.item() == pytest.approx(0.04 + changed, rel=1e-6)
    assert describe_loss("contrastive", changed_weight=changed_weight) == label


def test_contrastive_default_is_the_plain_form() -> None:
    assert ContrastiveLoss().changed_weight == 1.0
    assert describe_loss("contrastive") == "contrastive (plain)"


@pytest.mark.parametrize("bad", [0.0, -10.0, float("nan")])
def test_contrastive_refuses_a_non_positive_changed_weight(bad: float) -> None:
    with pytest.raises(ConfigError, match="changed_weight: expected > 0"):
        build_loss("contrastive", changed_weight=bad)


def released_contrastive_loss(e0: Tensor, e1: Tensor, label: Tensor) -> Tensor:
    """BSFNet's released `contrastive_loss`, restated: d = sqrt(sum_c (|e0 - e1| + 1e-6)^2),
    (sum((1 - y) max(d - 0.1, 0)^2) + sum(y max(2 - d, 0)^2 * 10)) / (number of label pixels);
    `label` is (B, H, W) as the released training script passes it."""
    dist = ((e0 - e1).abs() + 1e-6).pow(2).sum(dim=1).sqrt()
    pull = (1 - label) * torch.clamp(dist - 0.1, min=0.0).pow(2)
    push = label * torch.clamp(2.0 - dist, min=0.0).pow(2) * 10.0
    return (pull.sum() + push.sum()) / label.numel()


def test_changed_weight_ten_is_the_released_contrastive_loss() -> None:
    # Embeddings as BSFNet gives them (unit length over 16 channels); ours reads the distance
    # BSFNet returns, ||e0 - e1 + 1e-6|| (at most 8e-6 from the released one: see SISB's test).
    generator = torch.Generator().manual_seed(1)
    e0, e1 = (
        F.normalize(torch.randn(2, 16, 4, 4, generator=generator, dtype=torch.float64), dim=1)
        for _ in range(2)
    )
    label = (torch.rand(2, 4, 4, generator=generator) > 0.6).double()
    distance = torch.linalg.vector_norm(e0 - e1 + 1e-6, dim=1, keepdim=True)
    released = released_contrastive_loss(e0, e1, label).item()
    ten, _ = ContrastiveLoss(changed_weight=10.0)(distance_output(distance), label.unsqueeze(1))
    plain, _ = ContrastiveLoss()(distance_output(distance), label.unsqueeze(1))
    assert ten.item() == pytest.approx(released, abs=1e-4)
    assert abs(plain.item() - released) > 0.1


# ----------------------------------------------------------------------------- SISB edge case


def released_sisb(distance: Tensor, label: Tensor) -> Tensor:
    """BSFNet's released `BCL_v2(...) + IOUloss_v1(...)` restated on a given distance map
    (both recompute d from the embeddings; see benchmark/losses/sisb.py for that difference)."""
    n_c = (label == 1).float().sum() + 0.0001
    n_u = (label == 0).float().sum() + 0.0001
    bcl = ((1 - label) * torch.clamp(distance - 0.1, min=0.0).pow(2)).sum() / n_u + (
        label * torch.clamp(2.0 - distance, min=0.0).pow(2)
    ).sum() / n_c
    predict, gt = distance > 1.0, label == 1.0
    iou = 1 - (predict & gt).float().sum() / (predict | gt).float().sum()
    return bcl + iou


def test_sisb_on_a_batch_without_change_is_finite_where_the_released_loss_is_nan() -> None:
    # d = [[0.0, 0.5], [0.9, 1.0]] (none > 1, so nothing predicted changed), y = 0 everywhere.
    #   unchanged: 0 + 0.4^2 + 0.8^2 + 0.9^2 = 0.16 + 0.64 + 0.81 = 1.61, / (4 + 1e-4)
    #   changed: 0 / (0 + 1e-4) = 0
    #   IoU: intersection 0, union 0 -> released 1 - 0/0 = NaN; ours 0 (perfect agreement)
    values = [[[[0.0, 0.5], [0.9, 1.0]]]]
    d_ours = torch.tensor(values, requires_grad=True)
    d_released = torch.tensor(values, requires_grad=True)
    label = torch.zeros(1, 1, 2, 2)
    released = released_sisb(d_released, label)
    ours, parts = SISBLoss()(distance_output(d_ours), label)
    assert math.isnan(released.item())
    assert parts["iou"].item() == 0.0
    assert ours.item() == pytest.approx(1.61 / (4 + EPS), rel=1e-6)
    # the gradients agree, finite in both: the released IoU term carries none
    released.backward()
    ours.backward()
    assert torch.isfinite(d_released.grad).all()
    torch.testing.assert_close(d_ours.grad, d_released.grad)


def test_sisb_equals_the_released_loss_when_the_union_is_not_empty() -> None:
    generator = torch.Generator().manual_seed(2)
    distance = 2 * torch.rand(2, 1, 8, 8, generator=generator)
    label = (torch.rand(2, 1, 8, 8, generator=generator) > 0.7).float()
    ours, _ = SISBLoss()(distance_output(distance), label)
    assert ours.item() == pytest.approx(released_sisb(distance, label).item(), rel=1e-6)


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("name", "options", "label"),
    [
        ("sisb", {}, "sisb (hard IoU, released)"),
        ("sisb", {"iou": "soft"}, "sisb (soft IoU)"),
        ("bce", {}, "bce"),
        ("ifn_ds", {"dice": "cdlab", "upsample": "nearest"}, "ifn_ds (BCE + CDLab Dice, nearest)"),
        ("ifn_ds", {"dice": "none"}, "ifn_ds (BCE, bilinear)"),
        ("ifn_ds", {}, "ifn_ds (BCE + GeoZcx Dice, bilinear)"),
    ],
)
def test_describe_loss_names_the_form(name: str, options: dict, label: str) -> None:
    assert describe_loss(name, **options) == label
