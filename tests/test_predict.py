"""Tests of benchmark.evaluation.predict: the evaluation score is read as the loss declares."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from benchmark.evaluation.predict import evaluation_score, score_kind
from benchmark.losses import ChangeLoss, ScoreKind, build_loss
from benchmark.models.output import ChangeOutput, OutputName


class HalvedDistance(ChangeLoss):
    """A stand-in loss that declares a probability score read as half the distance."""

    needs: ClassVar[frozenset[OutputName]] = frozenset({"distance"})
    score_kind: ClassVar[ScoreKind] = "probability"

    def forward(self, output: ChangeOutput, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return output.score.sum(), {}

    def describe(self) -> str:
        return ""

    def evaluation_score(self, output: ChangeOutput) -> Tensor:
        return output.score.float() / 2


def test_score_kind_and_score_come_from_the_loss_alone() -> None:
    distance = torch.tensor([[[[0.5, 2.0]]]])
    output = ChangeOutput(score=distance, score_kind="distance")
    loss = HalvedDistance()
    assert score_kind(loss) == "probability"
    assert evaluation_score(output, loss).flatten().tolist() == [0.25, 1.0]


def test_the_bsfnet_losses_keep_their_score_kinds() -> None:
    # sisb and contrastive score BSFNet's distance; bce the probability of its affine map.
    assert [score_kind(build_loss(name)) for name in ("sisb", "contrastive", "bce")] == [
        "distance",
        "distance",
        "probability",
    ]
    assert score_kind(build_loss("ifn_ds")) == "probability"
