"""Tests of benchmark.losses against values computed by hand on tiny maps.

Every expected value is written out as arithmetic in the comments and computed here with plain
Python `math`, never by the code under test.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.errors import ConfigError
from benchmark.losses import (
    LOSSES,
    ContrastiveLoss,
    DeepSupervisionLoss,
    DistanceBCELoss,
    SISBLoss,
    build_loss,
    check_binary_labels,
    check_pair,
    losses_for,
)
from benchmark.losses.sisb import hard_iou_loss, soft_iou_loss
from benchmark.models import MODELS
from benchmark.models.output import ChangeOutput

EPS = 1e-4  # the released BCL_v2 adds 0.0001 to each class count


def grid(values: list[list[float]], requires_grad: bool = False) -> Tensor:
    """A (1, 1, H, W) float32 map from nested rows."""
    return torch.tensor([[values]], dtype=torch.float32, requires_grad=requires_grad)


def distance_output(distance: Tensor) -> ChangeOutput:
    return ChangeOutput(score=distance, score_kind="distance")


def logit_output(*sides: Tensor) -> ChangeOutput:
    return ChangeOutput(score=sides[-1], score_kind="logit", side_logits=tuple(sides))


# The running example for the distance losses (one 2x2 image):
#   d = [[0.05, 0.5], [1.5, 0.3]]     y = [[0, 0], [1, 1]]
# unchanged pixels: max(0.05 - 0.1, 0)^2 = 0,  max(0.5 - 0.1, 0)^2 = 0.4^2 = 0.16  -> sum 0.16
# changed pixels:   max(2 - 1.5, 0)^2 = 0.25,  max(2 - 0.3, 0)^2 = 1.7^2 = 2.89   -> sum 3.14
D_EXAMPLE = [[0.05, 0.5], [1.5, 0.3]]
Y_EXAMPLE = [[0.0, 0.0], [1.0, 1.0]]


# ----------------------------------------------------------------------------- labels


def test_check_binary_labels_returns_float_for_every_dtype() -> None:
    for dtype in (torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool):
        mask = torch.tensor([0, 1, 1, 0]).to(dtype)
        out = check_binary_labels(mask)
        assert out.dtype == torch.float32
        assert out.tolist() == [0.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize("bad", [[0, 255], [0.0, 0.5], [0.0, -1.0], [0.0, float("nan")]])
def test_check_binary_labels_rejects_values_outside_0_1(bad: list[float]) -> None:
    with pytest.raises(ValueError, match=r"only 0 \(no change\) and 1 \(change\)"):
        check_binary_labels(torch.tensor(bad))


def test_check_binary_labels_explains_0_255_labels() -> None:
    with pytest.raises(ValueError, match="divide by 255") as info:
        check_binary_labels(torch.tensor([0, 255, 255], dtype=torch.uint8))
    assert "0, 255" in str(info.value)


# ----------------------------------------------------------------------------- SISB


def test_sisb_hard_matches_hand_value() -> None:
    # N_u = 2 + 1e-4, N_c = 2 + 1e-4 (counts over the whole batch, + eps)
    # contrastive_unchanged = 0.16 / 2.0001, contrastive_changed = 3.14 / 2.0001
    # hard IoU: {d > 1} = [F, F, T, F], {y = 1} = [F, F, T, T]: inter 1, union 2 -> 1 - 1/2 = 0.5
    total, parts = SISBLoss()(distance_output(grid(D_EXAMPLE)), grid(Y_EXAMPLE))
    assert parts["contrastive_unchanged"].item() == pytest.approx(0.16 / (2 + EPS), rel=1e-6)
    assert parts["contrastive_changed"].item() == pytest.approx(3.14 / (2 + EPS), rel=1e-6)
    assert parts["iou"].item() == pytest.approx(0.5)
    assert total.item() == pytest.approx(3.30 / (2 + EPS) + 0.5, rel=1e-6)


def test_sisb_soft_iou_matches_hand_value() -> None:
    # p = d / 2 = [0.025, 0.25, 0.75, 0.15]; inter = 0.75 + 0.15 = 0.9
    # union = sum(p) + sum(y) - inter = 1.175 + 2 - 0.9 = 2.275; loss = 1 - 0.9 / 2.275
    total, parts = SISBLoss(iou="soft")(distance_output(grid(D_EXAMPLE)), grid(Y_EXAMPLE))
    soft = 1 - 0.9 / 2.275
    assert parts["iou"].item() == pytest.approx(soft, rel=1e-6)
    assert total.item() == pytest.approx(3.30 / (2 + EPS) + soft, rel=1e-6)


def test_sisb_iou_weight_and_margins_are_used() -> None:
    # margins 0.2 / 1.0: unchanged 0.05 -> 0, 0.5 -> 0.3^2 = 0.09; changed 1.5 -> 0,
    # 0.3 -> 0.7^2 = 0.49; iou 0.5 weighted by 2 -> 1.0
    loss = SISBLoss(margin_unchanged=0.2, margin_changed=1.0, iou_weight=2.0)
    total, _ = loss(distance_output(grid(D_EXAMPLE)), grid(Y_EXAMPLE))
    assert total.item() == pytest.approx(0.09 / (2 + EPS) + 0.49 / (2 + EPS) + 1.0, rel=1e-6)


def test_sisb_iou_threshold_moves_the_hard_decision() -> None:
    # threshold 0.4: {d > 0.4} = [F, T, T, F]; {y = 1} = [F, F, T, T]: inter 1, union 3
    _, parts = SISBLoss(iou_threshold=0.4)(distance_output(grid(D_EXAMPLE)), grid(Y_EXAMPLE))
    assert parts["iou"].item() == pytest.approx(1 - 1 / 3)


def test_sisb_all_changed_batch() -> None:
    # d = [[0.5, 2.0], [1.2, 0.0]], y = 1 everywhere.
    # unchanged: no pixels -> 0 / (0 + 1e-4) = 0
    # changed: 1.5^2 + 0^2 + 0.8^2 + 2^2 = 2.25 + 0 + 0.64 + 4 = 6.89, / (4 + 1e-4)
    # IoU: {d > 1} = [F, T, T, F], all true: inter 2, union 4 -> 0.5
    d = grid([[0.5, 2.0], [1.2, 0.0]], requires_grad=True)
    total, parts = SISBLoss()(distance_output(d), torch.ones(1, 1, 2, 2))
    assert parts["contrastive_unchanged"].item() == 0.0
    assert parts["contrastive_changed"].item() == pytest.approx(6.89 / (4 + EPS), rel=1e-6)
    assert total.item() == pytest.approx(6.89 / (4 + EPS) + 0.5, rel=1e-6)
    total.backward()
    assert torch.isfinite(d.grad).all()


def test_sisb_no_changed_batch() -> None:
    # d = [[0.0, 0.1], [0.2, 1.1]], y = 0 everywhere.
    # unchanged: 0 + 0 + 0.1^2 + 1.0^2 = 1.01, / (4 + 1e-4); changed: 0 / 1e-4 = 0
    # IoU: {d > 1} = [F, F, F, T], no true change: inter 0, union 1 -> 1
    d = grid([[0.0, 0.1], [0.2, 1.1]], requires_grad=True)
    total, parts = SISBLoss()(distance_output(d), torch.zeros(1, 1, 2, 2))
    assert parts["contrastive_changed"].item() == 0.0
    assert parts["contrastive_unchanged"].item() == pytest.approx(1.01 / (4 + EPS), rel=1e-6)
    assert parts["iou"].item() == pytest.approx(1.0)
    total.backward()
    assert torch.isfinite(d.grad).all()


@pytest.mark.parametrize("iou", ["hard", "soft"])
def test_sisb_empty_union_gives_zero_iou_not_nan(iou: str) -> None:
    # No predicted change (all d <= 1; soft: d = 0 so p = 0) and no true change: the released
    # code would log 0/0 = NaN; here the IoU term is 0.
    # unchanged: only 0.3 exceeds the margin in the hard case: 0.2^2 = 0.04, / (4 + 1e-4)
    values = [[0.0, 0.1], [0.05, 0.3]] if iou == "hard" else [[0.0, 0.0], [0.0, 0.0]]
    d = grid(values, requires_grad=True)
    total, parts = SISBLoss(iou=iou)(distance_output(d), torch.zeros(1, 1, 2, 2))
    assert parts["iou"].item() == 0.0
    expected = 0.04 / (4 + EPS) if iou == "hard" else 0.0
    assert total.item() == pytest.approx(expected, rel=1e-6, abs=1e-12)
    total.backward()
    assert torch.isfinite(d.grad).all()


def test_sisb_counts_pixels_over_the_whole_batch() -> None:
    # Two images. Image 0: d = [[1.0, 0.0], [0.0, 0.0]], y = [[1, 0], [0, 0]]
    #             Image 1: d = [[1.0, 1.0], [1.0, 0.6]], y = [[1, 1], [1, 0]]
    # changed pixels over the batch: 4, each with d = 1 -> (2 - 1)^2 = 1 -> sum 4, / (4 + 1e-4)
    # unchanged pixels: 4, only d = 0.6 counts: 0.5^2 = 0.25 -> / (4 + 1e-4)
    # (a per-image normalisation would give 1/1 + 3/3 for the changed part, i.e. 2, not 1)
    # IoU: {d > 1} is empty; true change 4 pixels: inter 0, union 4 -> 1
    d = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 0.6]]]])
    y = torch.tensor([[[[1, 0], [0, 0]]], [[[1, 1], [1, 0]]]])
    total, parts = SISBLoss()(distance_output(d), y)
    assert parts["contrastive_changed"].item() == pytest.approx(4 / (4 + EPS), rel=1e-6)
    assert parts["contrastive_unchanged"].item() == pytest.approx(0.25 / (4 + EPS), rel=1e-6)
    assert total.item() == pytest.approx(4.25 / (4 + EPS) + 1.0, rel=1e-6)


def test_hard_iou_has_no_gradient_and_soft_iou_has_one() -> None:
    d = grid(D_EXAMPLE, requires_grad=True)
    y = grid(Y_EXAMPLE)
    assert not hard_iou_loss(d, y, 1.0).requires_grad
    soft = soft_iou_loss(d, y, 1.0)
    (grad,) = torch.autograd.grad(soft, d)
    assert grad.abs().sum() > 0
    # dL/dp_i for L = 1 - I/U with I = sum(p y), U = sum(p) + sum(y) - I:
    # unchanged pixel (y = 0): dI = 0, dU = 1 -> I / U^2; dp/dd = 1/2
    # I = 0.9, U = 2.275 -> grad at pixel (0, 1) = 0.5 * 0.9 / 2.275^2
    assert grad[0, 0, 0, 1].item() == pytest.approx(0.5 * 0.9 / 2.275**2, rel=1e-5)


def test_sisb_hard_gradient_comes_only_from_the_contrastive_part() -> None:
    # d/dd of the contrastive terms (N = 2 + 1e-4 for both classes):
    #   unchanged 0.05: 0 (inside the margin); unchanged 0.5: 2 * 0.4 / N = 0.8 / N
    #   changed 1.5: -2 * 0.5 / N = -1 / N;     changed 0.3: -2 * 1.7 / N = -3.4 / N
    d = grid(D_EXAMPLE, requires_grad=True)
    total, _ = SISBLoss(iou_weight=5.0)(distance_output(d), grid(Y_EXAMPLE))
    total.backward()
    n = 2 + EPS
    expected = torch.tensor([[[[0.0, 0.8 / n], [-1.0 / n, -3.4 / n]]]])
    torch.testing.assert_close(d.grad, expected)


def test_sisb_soft_gradient_includes_the_iou_part() -> None:
    d_hard = grid(D_EXAMPLE, requires_grad=True)
    d_soft = grid(D_EXAMPLE, requires_grad=True)
    SISBLoss(iou="hard")(distance_output(d_hard), grid(Y_EXAMPLE))[0].backward()
    SISBLoss(iou="soft")(distance_output(d_soft), grid(Y_EXAMPLE))[0].backward()
    # at the unchanged pixel d = 0.05 the contrastive gradient is 0, the soft IoU's is not
    assert d_hard.grad[0, 0, 0, 0].item() == 0.0
    assert d_soft.grad[0, 0, 0, 0].item() == pytest.approx(0.5 * 0.9 / 2.275**2, rel=1e-5)


def released_bcl_v2_distance(e0: Tensor, e1: Tensor) -> Tensor:
    """The distance inside the released `BCL_v2`: sqrt(sum_c (|e0 - e1| + 1e-6)^2), (B, 1, H, W)."""
    return ((e0 - e1).abs() + 1e-6).pow(2).sum(dim=1, keepdim=True).sqrt()


def test_sisb_distance_is_within_8e_6_of_the_released_training_distance() -> None:
    # SISB reads output.score = ||e0 - e1 + 1e-6|| (F.pairwise_distance, as BSFNet returns it);
    # the released BCL_v2 uses || |e0 - e1| + 1e-6 ||. Each lies within ||1e-6 * ones(16)|| =
    # 4e-6 of ||e0 - e1||, so they differ by at most 8e-6, reached when all 16 channels of
    # e0 - e1 are negative and equal. Computed in float64 so that rounding stays far below 1e-6.
    generator = torch.Generator().manual_seed(0)
    e0, e1 = (
        F.normalize(torch.randn(2, 16, 4, 4, generator=generator, dtype=torch.float64), dim=1)
        for _ in range(2)
    )
    ours = torch.linalg.vector_norm(e0 - e1 + 1e-6, dim=1, keepdim=True)
    released = released_bcl_v2_distance(e0, e1)
    assert (ours - released).abs().max().item() <= 8e-6 + 1e-12
    worst0 = torch.full((1, 16, 1, 1), -0.25, dtype=torch.float64)  # unit norm: 16 * 0.0625
    worst = released_bcl_v2_distance(worst0, -worst0) - torch.linalg.vector_norm(
        2 * worst0 + 1e-6, dim=1, keepdim=True
    )
    assert worst.item() == pytest.approx(8e-6, rel=1e-6)
    # and the loss barely notices: totals on the two distances agree to 1e-5
    mask = (torch.rand(2, 1, 4, 4, generator=generator) > 0.5).float()
    on_ours, _ = SISBLoss()(distance_output(ours.float()), mask)
    on_released, _ = SISBLoss()(distance_output(released.float()), mask)
    assert on_ours.item() == pytest.approx(on_released.item(), abs=1e-5)


# ----------------------------------------------------------------------------- contrastive


def test_contrastive_matches_hand_value() -> None:
    # mean over the 4 pixels: unchanged 0.16 / 4 = 0.04, changed 3.14 / 4 = 0.785, total 0.825
    # (the released `contrastive_loss` would weight the changed part by 10: 0.04 + 7.85)
    total, parts = ContrastiveLoss()(distance_output(grid(D_EXAMPLE)), grid(Y_EXAMPLE))
    assert parts["contrastive_unchanged"].item() == pytest.approx(0.04, rel=1e-6)
    assert parts["contrastive_changed"].item() == pytest.approx(0.785, rel=1e-6)
    assert total.item() == pytest.approx(0.825, rel=1e-6)


@pytest.mark.parametrize(
    ("mask_value", "expected"),
    [
        # all changed, d = [[0.5, 2.0], [1.2, 0.0]]: (2.25 + 0 + 0.64 + 4) / 4 = 6.89 / 4
        (1, 6.89 / 4),
        # none changed: (0.4^2 + 1.9^2 + 1.1^2 + 0) / 4 = (0.16 + 3.61 + 1.21) / 4 = 4.98 / 4
        (0, 4.98 / 4),
    ],
)
def test_contrastive_all_or_no_change(mask_value: int, expected: float) -> None:
    d = grid([[0.5, 2.0], [1.2, 0.0]])
    total, _ = ContrastiveLoss()(distance_output(d), torch.full((1, 1, 2, 2), mask_value))
    assert math.isfinite(total.item())
    assert total.item() == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------------- BCE on distance


def bce_by_hand(logit: float, label: float) -> float:
    """-[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))]."""
    p = 1 / (1 + math.exp(-logit))
    return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def test_distance_bce_matches_hand_value_and_trains_its_parameters() -> None:
    # d = [[0, 1], [2, 0.5]], y = [[0, 1], [1, 0]]; z = 4 d - 4 = [-4, 0, 4, -2]
    loss = DistanceBCELoss()
    d = grid([[0.0, 1.0], [2.0, 0.5]])
    y = grid([[0.0, 1.0], [1.0, 0.0]])
    total, parts = loss(distance_output(d), y)
    pixels = [(-4.0, 0.0), (0.0, 1.0), (4.0, 1.0), (-2.0, 0.0)]
    expected = sum(bce_by_hand(z, t) for z, t in pixels) / 4
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert parts["bce"].item() == pytest.approx(expected, rel=1e-6)
    assert (parts["scale"].item(), parts["offset"].item()) == (4.0, -4.0)
    total.backward()
    # dL/dz_i = (sigmoid(z_i) - y_i) / 4; dL/doffset = sum_i dL/dz_i; dL/dscale = sum_i d_i dL/dz_i
    residual = [1 / (1 + math.exp(-z)) - t for z, t in pixels]
    distances = [0.0, 1.0, 2.0, 0.5]
    assert loss.offset.grad.item() == pytest.approx(sum(residual) / 4, rel=1e-5)
    grad_scale = sum(r * di for r, di in zip(residual, distances, strict=True)) / 4
    assert loss.scale.grad.item() == pytest.approx(grad_scale, rel=1e-5)


def test_distance_bce_logit_is_zero_at_the_released_threshold() -> None:
    loss = DistanceBCELoss()
    assert loss.logit(torch.tensor(1.0)).item() == 0.0
    assert loss.decision_distance().item() == 1.0
    assert set(dict(loss.named_parameters())) == {"scale", "offset"}


def test_distance_bce_logged_parameters_do_not_follow_later_updates() -> None:
    loss = DistanceBCELoss()
    _, parts = loss(distance_output(grid([[1.0]])), grid([[1.0]]))
    with torch.no_grad():
        loss.scale.add_(1.0)
    assert parts["scale"].item() == 4.0


# ----------------------------------------------------------------------------- IFN deep supervision

# A full-resolution side logit whose sigmoid is easy to write down:
#   z = [[ln 3, -ln 3], [0, ln 9]] -> p = [[0.75, 0.25], [0.5, 0.9]];  y = [[1, 0], [0, 1]]
Z_FINE = [[math.log(3), -math.log(3)], [0.0, math.log(9)]]
Y_FINE = [[1.0, 0.0], [0.0, 1.0]]
# BCE: mean(-ln 0.75, -ln(1 - 0.25), -ln(1 - 0.5), -ln 0.9)
BCE_FINE = (2 * -math.log(0.75) - math.log(0.5) - math.log(0.9)) / 4
# Dice: sum(p y) = 0.75 + 0.9 = 1.65, sum(p) = 2.4, sum(y) = 2
#   1 - (2 * 1.65 + 1) / (2.4 + 2 + 1) = 1 - 4.3 / 5.4
DICE_FINE = 1 - 4.3 / 5.4


def test_ifn_ds_single_output_matches_hand_value() -> None:
    total, parts = DeepSupervisionLoss(weights=(1.0,))(logit_output(grid(Z_FINE)), grid(Y_FINE))
    assert parts["bce_0"].item() == pytest.approx(BCE_FINE, rel=1e-6)
    assert parts["dice_0"].item() == pytest.approx(DICE_FINE, rel=1e-6)
    assert total.item() == pytest.approx(BCE_FINE + DICE_FINE, rel=1e-6)


def test_ifn_ds_dice_has_the_factor_two() -> None:
    # Without the factor 2 (CDLab-style numerator) the value would be 1 - (1.65 + 1) / 5.4.
    _, parts = DeepSupervisionLoss(weights=(1.0,))(logit_output(grid(Z_FINE)), grid(Y_FINE))
    assert parts["dice_0"].item() == pytest.approx(1 - 4.3 / 5.4, rel=1e-6)
    assert parts["dice_0"].item() != pytest.approx(1 - 2.65 / 5.4, rel=1e-3)


def test_ifn_ds_applies_the_sigmoid_once() -> None:
    # Confident, correct logits (+-20) give a loss near 0. A second sigmoid would squash the
    # probabilities into [0.5, 0.731] and leave BCE >= -ln 0.731 = 0.31 on the changed pixels.
    z = grid([[20.0, -20.0], [-20.0, 20.0]])
    total, parts = DeepSupervisionLoss(weights=(1.0,))(logit_output(z), grid(Y_FINE))
    assert total.item() < 1e-6
    # And the hand value above differs from its double-sigmoid counterpart:
    # p' = sigmoid([0.75, 0.25, 0.5, 0.9]); Dice' = 1 - (2 (p'_0 + p'_3) + 1) / (sum p' + 3)
    p2 = [1 / (1 + math.exp(-p)) for p in (0.75, 0.25, 0.5, 0.9)]
    dice_double = 1 - (2 * (p2[0] + p2[3]) + 1) / (sum(p2) + 2 + 1)
    assert abs(DICE_FINE - dice_double) > 0.1
    _, parts = DeepSupervisionLoss(weights=(1.0,))(logit_output(grid(Z_FINE)), grid(Y_FINE))
    assert parts["dice_0"].item() == pytest.approx(DICE_FINE, rel=1e-6)


def test_ifn_ds_weights_and_upsampling_of_a_coarse_output() -> None:
    # Coarse side logit 0 at 1x1, upsampled (either mode) to 2x2 zeros: p = 0.5 everywhere.
    #   BCE = ln 2; Dice = 1 - (2 * 0.5 * 2 + 1) / (2 + 2 + 1) = 1 - 3 / 5 = 0.4
    # weights (0.5, 1): total = 0.5 (ln 2 + 0.4) + (BCE_FINE + DICE_FINE)
    for mode in ("bilinear", "nearest"):
        loss = DeepSupervisionLoss(weights=(0.5, 1.0), upsample=mode)
        total, parts = loss(logit_output(grid([[0.0]]), grid(Z_FINE)), grid(Y_FINE))
        assert parts["bce_0"].item() == pytest.approx(math.log(2), rel=1e-6)
        assert parts["dice_0"].item() == pytest.approx(0.4, rel=1e-6)
        expected = 0.5 * (math.log(2) + 0.4) + BCE_FINE + DICE_FINE
        assert total.item() == pytest.approx(expected, rel=1e-6)
        assert (parts["bce"] + parts["dice"]).item() == pytest.approx(expected, rel=1e-6)


def test_ifn_ds_nearest_upsampling_by_hand() -> None:
    # 1x2 logits [[ln 3, -ln 3]] nearest-upsampled to 2x4 repeat each value twice per row:
    #   z = [ln 3, ln 3, -ln 3, -ln 3] (both rows) -> p = [0.75, 0.75, 0.25, 0.25]
    #   y = [1, 1, 0, 0] (both rows) -> BCE = -ln 0.75 on every pixel
    # (bilinear would blend the middle columns to +-ln(3)/2 and give a larger loss)
    side = torch.tensor([[[[math.log(3), -math.log(3)]]]])
    y = grid([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    loss = DeepSupervisionLoss(weights=(1.0,), dice="none", upsample="nearest")
    total, parts = loss(logit_output(side), y)
    assert total.item() == pytest.approx(-math.log(0.75), rel=1e-6)
    assert "dice_0" not in parts
    assert parts["dice"].item() == 0.0
    bilinear, _ = DeepSupervisionLoss(weights=(1.0,), dice="none")(logit_output(side), y)
    assert bilinear.item() > total.item() + 0.01


def test_ifn_ds_five_outputs_match_manual_bce_on_upsampled_logits() -> None:
    torch.manual_seed(0)
    mask = (torch.rand(2, 1, 32, 32) > 0.7).float()
    sides = tuple(torch.randn(2, 1, 32 // s, 32 // s) for s in (16, 8, 4, 2, 1))
    loss = DeepSupervisionLoss(dice="none")
    total, parts = loss(logit_output(*sides), mask)
    manual = []
    for side in sides:
        up = F.interpolate(side, size=(32, 32), mode="bilinear", align_corners=False)
        manual.append(F.binary_cross_entropy_with_logits(up, mask))
    for k, value in enumerate(manual):
        assert parts[f"bce_{k}"].item() == pytest.approx(value.item(), rel=1e-6)
    assert total.item() == pytest.approx(sum(v.item() for v in manual), rel=1e-6)


def test_ifn_ds_gradient_reaches_every_side_output() -> None:
    sides = tuple(torch.zeros(1, 1, 4 // s, 4 // s, requires_grad=True) for s in (4, 2, 1))
    total, _ = DeepSupervisionLoss(weights=(1, 1, 1))(logit_output(*sides), torch.ones(1, 1, 4, 4))
    total.backward()
    assert all(side.grad is not None and side.grad.abs().sum() > 0 for side in sides)


def test_ifn_ds_rejects_missing_or_mismatched_side_outputs() -> None:
    with pytest.raises(ValueError, match="side_logits"):
        DeepSupervisionLoss()(distance_output(grid(D_EXAMPLE)), grid(Y_EXAMPLE))
    with pytest.raises(ValueError, match="2 side outputs but 5 weights"):
        DeepSupervisionLoss()(logit_output(grid([[0.0]]), grid(Z_FINE)), grid(Y_FINE))


# ----------------------------------------------------------------------------- every loss

DISTANCE_LOSSES = (SISBLoss, ContrastiveLoss, DistanceBCELoss)


def example_call(name: str, mask: Tensor) -> Tensor:
    """Run the loss `name` with default options on the 2x2 examples and `mask`."""
    if name == "ifn_ds":
        return build_loss(name, weights=(1.0,))(logit_output(grid(Z_FINE)), mask)[0]
    return build_loss(name)(distance_output(grid(D_EXAMPLE)), mask)[0]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_rejects_0_255_labels(name: str) -> None:
    mask = torch.tensor([[[[0, 255], [255, 0]]]], dtype=torch.uint8)
    with pytest.raises(ValueError, match="divide by 255"):
        example_call(name, mask)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_accepts_float_int_and_bool_masks(name: str) -> None:
    values = [[[[0, 1], [1, 0]]]]
    results = [
        example_call(name, torch.tensor(values, dtype=dtype)).item()
        for dtype in (torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool)
    ]
    assert all(math.isfinite(r) for r in results)
    assert results == [results[0]] * len(results)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_returns_a_scalar_and_detached_parts(name: str) -> None:
    z = grid(Z_FINE, requires_grad=True)
    d = grid(D_EXAMPLE, requires_grad=True)
    if name == "ifn_ds":
        total, parts = build_loss(name, weights=(1.0,))(logit_output(z), grid(Y_FINE))
    else:
        total, parts = build_loss(name)(distance_output(d), grid(Y_EXAMPLE))
    assert total.dim() == 0 and total.requires_grad
    assert parts and all(p.dim() == 0 and not p.requires_grad for p in parts.values())


@pytest.mark.parametrize("loss_class", DISTANCE_LOSSES)
def test_distance_losses_reject_a_logit_output(loss_class: type) -> None:
    output = logit_output(grid(Z_FINE))
    with pytest.raises(ValueError, match="score_kind='distance'"):
        loss_class()(output, grid(Y_FINE))


@pytest.mark.parametrize("loss_class", DISTANCE_LOSSES)
def test_distance_losses_reject_a_mask_of_another_shape(loss_class: type) -> None:
    with pytest.raises(ValueError, match=r"same \(B, 1, H, W\) shape"):
        loss_class()(distance_output(grid(D_EXAMPLE)), torch.zeros(1, 1, 4, 4))


# ----------------------------------------------------------------------------- build_loss


def test_build_loss_builds_every_loss_with_options() -> None:
    assert isinstance(build_loss("sisb", iou="soft"), SISBLoss)
    assert build_loss("sisb", iou="soft").iou == "soft"
    assert isinstance(build_loss("contrastive"), ContrastiveLoss)
    assert isinstance(build_loss("bce"), DistanceBCELoss)
    assert build_loss("ifn_ds", weights=[1, 2, 3, 4, 5], dice="none").weights == (1, 2, 3, 4, 5)


def test_build_loss_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown loss 'dice'") as info:
        build_loss("dice")
    for name in LOSSES:
        assert name in str(info.value)


def test_build_loss_unknown_option_names_it_and_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) margin for loss 'sisb'") as info:
        build_loss("sisb", margin=1.0)
    assert "margin_unchanged" in str(info.value) and "iou_weight" in str(info.value)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("sisb", {"iou": "medium"}),
        ("sisb", {"margin_changed": -1.0}),
        ("ifn_ds", {"upsample": "bicubic"}),
        ("ifn_ds", {"weights": []}),
        ("bce", {"initial_scale": 0.0}),
    ],
)
def test_build_loss_bad_values_raise_config_error(name: str, options: dict) -> None:
    with pytest.raises(ConfigError, match=f"loss '{name}'"):
        build_loss(name, **options)


# ----------------------------------------------------------------------------- declarations

# What each loss reads and how its model is scored, as the experiments of params.yaml use them:
# BSFNet returns a distance (and the two embeddings), IFN a logit and its side logits.
NEEDS = {
    "sisb": {"distance"},
    "contrastive": {"distance"},
    "bce": {"distance"},
    "ifn_ds": {"logit", "side_logits"},
}
SCORE_KINDS = {
    "sisb": "distance",
    "contrastive": "distance",
    "bce": "probability",
    "ifn_ds": "probability",
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_declares_its_needs_and_its_score_kind(name: str) -> None:
    loss = build_loss(name)
    assert loss.needs == NEEDS[name]
    assert loss.score_kind == SCORE_KINDS[name]


def test_losses_that_fit_each_model() -> None:
    assert losses_for("bsfnet") == ["sisb", "contrastive", "bce"]
    assert losses_for("ifn") == ["ifn_ds"]
    for model in MODELS:
        for loss in losses_for(model):
            check_pair(model, loss)  # every fitting pair passes


@pytest.mark.parametrize(
    ("model", "loss", "missing", "returned", "fitting"),
    [
        (
            "bsfnet",
            "ifn_ds",
            "logit, side_logits",
            "distance, embeddings",
            "sisb, contrastive, bce",
        ),
        ("ifn", "sisb", "distance", "logit, side_logits", "ifn_ds"),
        ("ifn", "bce", "distance", "logit, side_logits", "ifn_ds"),
    ],
)
def test_check_pair_refuses_a_loss_the_model_does_not_fit(
    model: str, loss: str, missing: str, returned: str, fitting: str
) -> None:
    expected = (
        f"loss '{loss}' does not fit model '{model}': it needs the output(s) {missing}, which "
        f"{model} does not return (it returns {returned}); losses that fit {model}: {fitting}"
    )
    with pytest.raises(ConfigError) as info:
        check_pair(model, loss)
    assert str(info.value) == expected


def test_check_pair_names_unknown_models_and_losses() -> None:
    with pytest.raises(ConfigError, match="unknown model 'unet'; expected one of: bsfnet, ifn"):
        check_pair("unet", "sisb")
    with pytest.raises(ConfigError, match="unknown loss 'dice'; expected one of: bce, "):
        check_pair("bsfnet", "dice")


def test_distance_losses_score_the_distance_itself() -> None:
    d = grid(D_EXAMPLE).to(torch.float16)  # read in float32, whatever the model's dtype
    for name in ("sisb", "contrastive"):
        score = build_loss(name).evaluation_score(distance_output(d))
        assert score.dtype == torch.float32
        assert torch.equal(score, d.float())


def test_bce_scores_the_probability_of_its_learned_affine_map() -> None:
    # At initialisation z = 4 d - 4: d = 0 -> sigmoid(-4), d = 1 -> 0.5, d = 2 -> sigmoid(4).
    loss = build_loss("bce")
    score = loss.evaluation_score(distance_output(grid([[0.0, 1.0, 2.0]])))
    expected = [1 / (1 + math.exp(4)), 0.5, 1 / (1 + math.exp(-4))]
    assert score.flatten().tolist() == pytest.approx(expected, abs=1e-6)
    # with scale 2 and offset -1: d = 0.5 -> z = 0 -> 0.5
    with torch.no_grad():
        loss.scale.fill_(2.0)
        loss.offset.fill_(-1.0)
    assert loss.evaluation_score(distance_output(grid([[0.5]]))).item() == 0.5


def test_ifn_ds_scores_the_sigmoid_of_the_finest_logit() -> None:
    # score is the finest side logit; the coarse one is not read.
    coarse, fine = grid([[9.0]]), grid([[0.0, math.log(3.0)], [-math.log(3.0), 0.0]])
    score = build_loss("ifn_ds").evaluation_score(logit_output(coarse, fine))
    # sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4
    assert score.flatten().tolist() == pytest.approx([0.5, 0.75, 0.25, 0.5], abs=1e-6)
