"""Checks of the inputs shared by every loss: binary labels, the right model output.

Change masks on disk are 0/255 PNGs; in tensors they must be {0, 1}.
A 0/255 mask that reaches a loss does not crash anything: it silently multiplies the change
terms by 255, or, where a loss counts pixels with `label == 1`, it counts no change at all.
Every loss therefore calls `check_binary_labels` first.

Cost: two element-wise comparisons, one reduction (`any`) and the copy of that one boolean to
the host per call, so on a GPU it is one synchronisation per training step. Boolean masks skip
the check (they cannot hold anything but 0 and 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

from benchmark.models.output import ChangeOutput

_SHOWN_VALUES = 8
"""How many distinct offending values the error message lists."""


def check_binary_labels(mask: Tensor) -> Tensor:
    """Return `mask` as float32, after checking that every value is 0 or 1.

    Args:
        mask: change mask of any shape and any integer, floating or boolean dtype.

    Returns:
        The same values as a float32 tensor on the same device.

    Raises:
        ValueError: if any value is neither 0 nor 1 (NaN included); the message lists the
            values found and says how to fix 0/255 labels.
    """
    if mask.dtype == torch.bool:
        return mask.float()
    values = mask.float()
    if bool(((values != 0) & (values != 1)).any()):
        raise ValueError(_not_binary_message(mask))
    return values


def _not_binary_message(mask: Tensor) -> str:
    """Describe a non-binary mask (only built on the error path, so its cost does not matter)."""
    distinct = torch.unique(mask.detach().flatten().cpu())
    shown = ", ".join(f"{v:g}" for v in distinct[:_SHOWN_VALUES].tolist())
    if distinct.numel() > _SHOWN_VALUES:
        shown += f", ... ({distinct.numel()} distinct values)"
    hint = ""
    if distinct.numel() and float(distinct.max()) == 255:
        hint = (
            " These look like 0/255 label images: divide by 255 (or binarise with `mask > 0`) "
            "when loading, otherwise the loss is silently wrong."
        )
    return (
        f"change mask passed to the loss must hold only 0 (no change) and 1 (change); "
        f"found values {shown} (dtype {mask.dtype}, shape {tuple(mask.shape)}).{hint} "
        f"Labels on disk are 0/255; in tensors they must be 0/1."
    )


def distance_and_target(output: ChangeOutput, mask: Tensor, loss: str) -> tuple[Tensor, Tensor]:
    """Check the inputs of a distance loss (BSFNet) and return them as float32 tensors.

    Args:
        output: the model's output; its `score` must be a distance (`score_kind="distance"`).
        mask: (B, 1, H, W) change mask in {0, 1}, the same shape as `output.score`.
        loss: the loss's name, for error messages.

    Returns:
        `(distance, target)`, both float32 and (B, 1, H, W).

    Raises:
        ValueError: if the score is not a distance, the shapes differ or the mask is not binary.
    """
    if output.score_kind != "distance":
        raise ValueError(
            f"loss {loss!r} needs output.score to be a distance (score_kind='distance', as "
            f"BSFNet returns); got score_kind={output.score_kind!r}. Use a logit loss "
            f"(e.g. 'ifn_ds') for this model."
        )
    check_same_shape(output.score, mask, "output.score", loss)
    return output.score.float(), check_binary_labels(mask)


def check_same_shape(prediction: Tensor, mask: Tensor, field: str, loss: str) -> None:
    """Raise ValueError unless `prediction` and `mask` are both (B, 1, H, W) of one shape."""
    if prediction.dim() != 4 or prediction.shape[1] != 1 or prediction.shape != mask.shape:
        raise ValueError(
            f"loss {loss!r}: expected {field} and the mask to be the same (B, 1, H, W) shape; "
            f"got {field} {tuple(prediction.shape)} and mask {tuple(mask.shape)}"
        )
