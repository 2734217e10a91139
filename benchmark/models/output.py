"""The one output contract every model returns, and what each model declares it returns.

`model(t0, t1) -> ChangeOutput`. `score` is what prediction thresholds (higher = more change);
the other fields are the named extras that a loss needs. A model fills the fields it has and
leaves the others as None; a loss that needs a missing field raises an error naming it.

Every model subclasses `ChangeModel` and lists in `outputs` what its `ChangeOutput` carries
(`OutputName`); every loss lists what it needs (`benchmark.losses.ChangeLoss.needs`), so that
`benchmark.losses.check_pair` refuses a model x loss pair before anything is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor, nn

OutputName = Literal["distance", "logit", "embeddings", "side_logits"]
"""What a `ChangeOutput` can carry: `score` as a distance (`score_kind="distance"`) or as a
logit (`score_kind="logit"`), and the extras `embeddings` and `side_logits`."""


@dataclass
class ChangeOutput:
    score: Tensor
    """(B, 1, H, W) change score at input resolution: a distance in [0, 2] (BSFNet) or a logit
    (IFN)."""

    score_kind: Literal["distance", "logit"]
    """How to read `score`: a metric distance (threshold around 1) or a logit (sigmoid, then
    threshold)."""

    embeddings: tuple[Tensor, Tensor] | None = None
    """BSFNet: the two dates' L2-normalised per-pixel embeddings, each (B, C, H, W)."""

    side_logits: tuple[Tensor, ...] | None = None
    """IFN: deep-supervision logits, coarsest first (1/16, 1/8, 1/4, 1/2, 1/1 of the input)."""

    def carries(self) -> frozenset[OutputName]:
        """The `OutputName`s this output holds (what a model's `outputs` must declare)."""
        names: set[OutputName] = {self.score_kind}
        if self.embeddings is not None:
            names.add("embeddings")
        if self.side_logits is not None:
            names.add("side_logits")
        return frozenset(names)


class ChangeModel(nn.Module):
    """A change-detection model: `model(t0, t1) -> ChangeOutput`.

    Subclasses set `outputs`, what every `ChangeOutput` they return carries (`carries()`), so
    that the losses that fit a model are known without building or running it.
    """

    outputs: ClassVar[frozenset[OutputName]]


def check_pair(t0: Tensor, t1: Tensor, model: str, multiple: int, why: str) -> None:
    """Raise a ValueError unless t0 and t1 are (B, 3, H, W) of one shape, H and W % multiple == 0.

    Args:
        t0, t1: the two dates given to `model`.
        model: the model's name, for the message.
        multiple: what H and W must be divisible by.
        why: the architectural reason for `multiple`, for the message.
    """
    if t0.shape != t1.shape or t0.dim() != 4 or t0.shape[1] != 3:
        raise ValueError(
            f"{model}: expected t0 and t1 of one shape (B, 3, H, W), got {tuple(t0.shape)} "
            f"and {tuple(t1.shape)}"
        )
    height, width = t0.shape[-2:]
    if height % multiple or width % multiple:
        raise ValueError(
            f"{model}: expected height and width divisible by {multiple} ({why}), "
            f"got {height} x {width}; crop or pad the images"
        )
