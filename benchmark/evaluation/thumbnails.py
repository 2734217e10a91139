"""The prediction thumbnails of one evaluated run: a few test pairs as arrays, in one `.npz`.

`cdbench evaluate` writes `reports/predictions/<run>.npz`; `cdbench report` draws every picture
of them (benchmark/reporting/figures.py). Arrays, N pairs of H x W pixels:

- `names` (N,) str: the pairs' file names without extension, in test-split order;
- `image_a`, `image_b` (N, H, W, 3) uint8: the two dates as stored (before normalisation);
- `label` (N, H, W) uint8: the ground truth, 1 = change;
- `prediction` (N, H, W) uint8: 1 where the score is strictly above `threshold`, computed
  from the float32 score (so it is the evaluation's own decision, not a float16 rounding's);
- `score` (N, H, W) float16: the evaluation score, higher = more change;
- `threshold` () float64: the threshold chosen on the validation split;
- `score_kind` () str: "distance" (BSFNet's metric distance) or "probability".

Written compressed (`numpy.savez_compressed`) and read without pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARRAYS = ("names", "image_a", "image_b", "label", "prediction", "score", "threshold", "score_kind")
"""The arrays of a thumbnails file, in the order they are written."""
SCORE_KINDS = ("distance", "probability")


@dataclass(frozen=True)
class Thumbnails:
    """A few test pairs of one run with its prediction and score maps (module docstring)."""

    names: np.ndarray
    image_a: np.ndarray
    image_b: np.ndarray
    label: np.ndarray
    prediction: np.ndarray
    score: np.ndarray
    threshold: float
    score_kind: str

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ValueError(f"thumbnails: {problem}")

    def _problem(self) -> str:
        """What is wrong with the arrays' shapes, dtypes or kind; "" when nothing is."""
        count = len(self.names)
        if self.names.ndim != 1 or self.names.dtype.kind != "U":
            return f"names: a {self.names.ndim}-D {self.names.dtype} array, expected (N,) str"
        expected = {
            "label": (np.uint8, 3),
            "image_a": (np.uint8, 4),
            "image_b": (np.uint8, 4),
            "prediction": (np.uint8, 3),
            "score": (np.float16, 3),
        }
        size = self.label.shape[1:] if self.label.ndim == 3 else None
        for key, (dtype, ndim) in expected.items():
            array: np.ndarray = getattr(self, key)
            shape = (count, *size, 3) if ndim == 4 and size else (count, *(size or ()))
            if array.dtype != dtype or array.ndim != ndim or array.shape != shape:
                wanted = "(N, H, W, 3)" if ndim == 4 else "(N, H, W)"
                return (
                    f"{key}: {array.dtype} {array.shape}, expected {np.dtype(dtype)} {wanted} "
                    f"with N = {count} names and H x W of the label"
                )
        for key in ("label", "prediction"):
            if np.any(getattr(self, key) > 1):
                return f"{key}: values above 1, expected a 0/1 mask"
        if self.score_kind not in SCORE_KINDS:
            return f"score_kind {self.score_kind!r}, expected one of {SCORE_KINDS}"
        return ""

    def __len__(self) -> int:
        return len(self.names)

    def save(self, path: Path) -> None:
        """Write the arrays to `path` (an `.npz` file), compressed."""
        with path.open("wb") as file:  # a file object: numpy adds no ".npz" to the name
            np.savez_compressed(
                file,
                names=self.names,
                image_a=self.image_a,
                image_b=self.image_b,
                label=self.label,
                prediction=self.prediction,
                score=self.score,
                threshold=np.float64(self.threshold),
                score_kind=np.str_(self.score_kind),
            )


def load_thumbnails(path: Path) -> Thumbnails:
    """The thumbnails written to `path` by `Thumbnails.save`.

    Raises:
        ValueError: `path` is not a readable `.npz`, lacks one of `ARRAYS`, or holds arrays of
            another shape or dtype (the message names the file and the array).
    """
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{path}: not a readable thumbnails file ({error}); rerun `cdbench evaluate`"
        ) from error
    missing = [key for key in ARRAYS if key not in arrays]
    if missing:
        raise ValueError(
            f"{path}: lacks the arrays {missing}; a thumbnails file holds {list(ARRAYS)} "
            f"(rerun `cdbench evaluate`)"
        )
    try:
        return Thumbnails(
            names=arrays["names"],
            image_a=arrays["image_a"],
            image_b=arrays["image_b"],
            label=arrays["label"],
            prediction=arrays["prediction"],
            score=arrays["score"],
            threshold=float(arrays["threshold"]),
            score_kind=str(arrays["score_kind"]),
        )
    except ValueError as error:
        raise ValueError(f"{path}: {error} (rerun `cdbench evaluate`)") from None
