"""The paired bootstrap of Δ F1 over test images (benchmark/reporting/paired.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from benchmark.reporting.paired import paired_bootstrap, pooled_f1


def _counts(rng: np.random.Generator, seeds: int, images: int, hit: float) -> np.ndarray:
    """(seeds, images, 4) counts of a model that finds about `hit` of each image's change."""
    changed = rng.integers(20, 200, size=(seeds, images))
    tp = rng.binomial(changed, hit)
    fp = rng.integers(0, 80, size=(seeds, images))
    fn = changed - tp
    tn = 4096 - tp - fp - fn
    return np.stack([tp, fp, fn, tn], axis=-1)


def test_interval_and_delta_match_scipy_bootstrap_on_a_small_example() -> None:
    rng = np.random.default_rng(1)
    base, candidate = _counts(rng, 2, 30, 0.6), _counts(rng, 2, 30, 0.7)
    ours = paired_bootstrap(base, candidate, resamples=20_000, seed=3)

    # scipy resamples the images (last axis) of every column with one shared draw (paired)
    columns = [a[s, :, k] for a in (base, candidate) for s in range(2) for k in range(4)]

    def delta(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        stacked = np.stack([c.sum(axis=axis) for c in resampled], axis=-1)  # (..., 16)
        pooled = stacked.reshape(*stacked.shape[:-1], 2, 2, 4)  # (..., model, seed, count)
        f1 = pooled_f1(pooled).mean(axis=-1)
        return 100 * (f1[..., 1] - f1[..., 0])

    theirs = stats.bootstrap(
        columns, delta, paired=True, vectorized=True, n_resamples=20_000,
        method="percentile", confidence_level=0.95, random_state=np.random.default_rng(4),
    )  # fmt: skip
    assert ours.delta == pytest.approx(float(delta(*columns)), abs=1e-9)
    width = ours.high - ours.low
    assert width > 0
    assert ours.low == pytest.approx(theirs.confidence_interval.low, abs=0.05 * width)
    assert ours.high == pytest.approx(theirs.confidence_interval.high, abs=0.05 * width)
    assert (ours.images, ours.seeds, ours.resamples) == (30, 2, 20_000)


def test_an_identical_pair_has_no_difference_and_p_one() -> None:
    counts = _counts(np.random.default_rng(2), 3, 12, 0.5)
    result = paired_bootstrap(counts, counts.copy(), resamples=500)
    assert result.delta == 0.0
    assert (result.low, result.high) == (0.0, 0.0)
    assert result.p_value == 1.0


def test_a_clearly_better_model_is_significant_and_swapping_mirrors_the_result() -> None:
    rng = np.random.default_rng(5)
    base = _counts(rng, 2, 40, 0.4)
    better = base.copy()
    moved = base[..., 2] // 2  # half of every image's missed change found
    better[..., 0] += moved
    better[..., 2] -= moved
    result = paired_bootstrap(base, better, resamples=2000)
    assert result.delta > 0
    assert result.low > 0
    assert result.p_value < 0.05
    swapped = paired_bootstrap(better, base, resamples=2000)
    assert swapped.delta == pytest.approx(-result.delta)
    assert (swapped.low, swapped.high) == pytest.approx((-result.high, -result.low))
    assert swapped.p_value == result.p_value


def test_unpaired_shapes_are_refused() -> None:
    counts = _counts(np.random.default_rng(7), 2, 5, 0.5)
    with pytest.raises(ValueError, match="same seeds, same test images"):
        paired_bootstrap(counts, counts[:, :4])
