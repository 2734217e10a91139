"""The thumbnails file of an evaluated run (benchmark/evaluation/thumbnails.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.evaluation.thumbnails import ARRAYS, Thumbnails, load_thumbnails


def _thumbnails(count: int = 2, side: int = 8) -> Thumbnails:
    rng = np.random.default_rng(0)
    return Thumbnails(
        names=np.array([f"pair_{i}" for i in range(count)], dtype=np.str_),
        image_a=rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8),
        image_b=rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8),
        label=rng.integers(0, 2, (count, side, side), dtype=np.uint8),
        prediction=rng.integers(0, 2, (count, side, side), dtype=np.uint8),
        score=rng.uniform(0, 2, (count, side, side)).astype(np.float16),
        threshold=0.8125,
        score_kind="distance",
    )


def test_save_then_load_gives_the_same_arrays(tmp_path: Path) -> None:
    thumbnails = _thumbnails()
    path = tmp_path / "run.npz"
    thumbnails.save(path)
    assert sorted(np.load(path).files) == sorted(ARRAYS)
    loaded = load_thumbnails(path)
    for key in ("names", "image_a", "image_b", "label", "prediction", "score"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(thumbnails, key))
        assert getattr(loaded, key).dtype == getattr(thumbnails, key).dtype, key
    assert loaded.threshold == 0.8125 and loaded.score_kind == "distance"
    assert len(loaded) == 2


def test_no_pairs_is_a_valid_file(tmp_path: Path) -> None:
    empty = Thumbnails(
        names=np.array([], dtype=np.str_),
        image_a=np.zeros((0, 0, 0, 3), np.uint8),
        image_b=np.zeros((0, 0, 0, 3), np.uint8),
        label=np.zeros((0, 0, 0), np.uint8),
        prediction=np.zeros((0, 0, 0), np.uint8),
        score=np.zeros((0, 0, 0), np.float16),
        threshold=0.5,
        score_kind="probability",
    )
    empty.save(tmp_path / "run.npz")
    assert len(load_thumbnails(tmp_path / "run.npz")) == 0


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("score", np.zeros((2, 8, 8), np.float32), r"score: float32 \(2, 8, 8\), expected float16"),
        ("image_b", np.zeros((2, 8, 9, 3), np.uint8), r"image_b: uint8 \(2, 8, 9, 3\)"),
        ("label", np.full((2, 8, 8), 255, np.uint8), "label: values above 1"),
        ("names", np.array(["one"]), r"label: .* N = 1 names"),
        ("score_kind", "logit", "score_kind 'logit'"),
    ],
)
def test_wrong_arrays_are_refused(key: str, value: object, message: str) -> None:
    fields = {name: getattr(_thumbnails(), name) for name in ARRAYS}
    fields[key] = value
    with pytest.raises(ValueError, match=message):
        Thumbnails(**fields)  # type: ignore[arg-type]


def test_a_bad_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "run.npz"
    path.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match=r"run\.npz: not a readable thumbnails file"):
        load_thumbnails(path)
    np.savez(path, names=np.array(["a"]))
    with pytest.raises(ValueError, match=r"run\.npz: lacks the arrays \['image_a'"):
        load_thumbnails(path)
    arrays = {name: getattr(_thumbnails(), name) for name in ARRAYS}
    arrays["prediction"] = arrays["prediction"].astype(bool)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"run\.npz: thumbnails: prediction: bool"):
        load_thumbnails(path)
