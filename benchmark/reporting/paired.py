"""Paired bootstrap over test images: is one loss's F1 really higher than another's?

Two experiments scored on the same test images (and seeds) are compared by resampling the
IMAGES with replacement, the same draw for both experiments and every seed (paired). On each
resample, every seed's F1 is recomputed from the summed confusion counts of the drawn images
(pooled, as the headline numbers are), averaged over seeds, and Δ = mean F1 of the candidate -
mean F1 of the base is taken. Reported (in percentage points):

- Δ: the observed difference (all test images, each seed once);
- a 95 % percentile interval of Δ over the resamples (Efron & Tibshirani 1993, "An
  Introduction to the Bootstrap", ch. 13.3);
- a two-sided p-value by the shift method (Efron & Tibshirani 1993, ch. 16.4; the paired
  bootstrap of Koehn 2004, "Statistical significance tests for machine translation
  evaluation", EMNLP, applied to a difference): the resampled Δ are centred on 0, which makes
  the null hypothesis "no difference" true, and p is the share of them at least as far from 0
  as the observed Δ, `(1 + #{|Δ* - Δ| >= |Δ|}) / (B + 1)` (the +1 of Davison & Hinkley 1997,
  "Bootstrap Methods and their Application", ch. 4.2: p is never 0 with finitely many draws).

The thresholds stay the ones each run's protocol chose, so the test asks which test images
were drawn, not how the threshold was picked; training noise is the seeds' std, shown beside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

RESAMPLES = 10_000
"""Bootstrap resamples of the test images for the paired test."""
SEED = 0
"""Random seed of the resamples (the interval and p-value are reproducible)."""
LEVEL = 0.95
"""Coverage of the percentile interval."""
CHUNK = 1000
"""Resamples drawn at once (bounds memory: CHUNK x images weights)."""


@dataclass(frozen=True)
class PairedResult:
    """The paired bootstrap of Δ F1 = candidate - base, in percentage points."""

    delta: float
    """Observed Δ: seed-mean pooled F1 of the candidate - that of the base."""
    low: float
    high: float
    """The percentile interval of Δ at `level`."""
    p_value: float
    """Two-sided, shift method (module docstring)."""
    resamples: int
    seed: int
    level: float
    images: int
    seeds: int


def pooled_f1(counts: np.ndarray) -> np.ndarray:
    """F1 (fraction) from (..., 4) tp, fp, fn, tn counts: 2 tp / (2 tp + fp + fn), 0 when the
    denominator is 0 (nothing predicted and nothing changed), as
    benchmark/evaluation/metrics.py `Counts.scores` defines it."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    denominator = 2 * tp + fp + fn
    f1: np.ndarray = np.divide(
        2 * tp, denominator, out=np.zeros_like(tp, dtype=float), where=denominator > 0
    )
    return f1


def resample_weights(images: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, images) how often each image is drawn in each resample: `images` draws with
    replacement, all images equally likely (a multinomial row per resample)."""
    return rng.multinomial(images, np.full(images, 1.0 / images), size=resamples).astype(float)


def paired_bootstrap(
    base: np.ndarray,
    candidate: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> PairedResult:
    """The paired bootstrap of Δ F1 (candidate - base) over test images (module docstring).

    Args:
        base, candidate: (seeds, images, 4) tp, fp, fn, tn of each seed on each test image;
            the same images in the same order for both, and the same seeds.
        resamples: B, the number of resamples.
        seed: the resamples' random seed.
        level: the interval's coverage.

    Raises:
        ValueError: the arrays are not (seeds, images, 4) of one shape, or have no image.
    """
    base = np.asarray(base, dtype=float)
    candidate = np.asarray(candidate, dtype=float)
    if base.ndim != 3 or base.shape[2] != 4 or base.shape != candidate.shape:
        raise ValueError(
            f"base {base.shape} and candidate {candidate.shape}: expected two (seeds, images, 4) "
            "arrays of tp, fp, fn, tn of one shape (same seeds, same test images)"
        )
    seeds, images, _ = base.shape
    if images == 0 or seeds == 0:
        raise ValueError("no test image or no seed to resample: both arrays are empty")
    observed = float(pooled_f1(candidate.sum(axis=1)).mean() - pooled_f1(base.sum(axis=1)).mean())
    rng = np.random.default_rng(seed)
    deltas = []
    for start in range(0, resamples, CHUNK):
        weights = resample_weights(images, min(CHUNK, resamples - start), rng)
        # (seeds, resamples, 4): each seed's counts summed over the drawn images
        f1_base = pooled_f1(np.einsum("rn,snk->srk", weights, base)).mean(axis=0)
        f1_candidate = pooled_f1(np.einsum("rn,snk->srk", weights, candidate)).mean(axis=0)
        deltas.append(f1_candidate - f1_base)
    delta = np.concatenate(deltas)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(delta, [tail, 100 - tail])
    # tolerance: a Δ* equal to the observed one up to rounding counts as "as far"
    beyond = np.abs(delta - observed) >= abs(observed) - 1e-12
    p_value = (1 + int(beyond.sum())) / (len(delta) + 1)
    return PairedResult(
        delta=100 * observed,
        low=100 * float(low),
        high=100 * float(high),
        p_value=p_value,
        resamples=resamples,
        seed=seed,
        level=level,
        images=images,
        seeds=seeds,
    )


def p_cell(p_value: float) -> str:
    """`0.032`, or `< 0.001` (with B = 10,000 the least p is 1 / 10,001)."""
    return "< 0.001" if p_value < 0.001 else f"{p_value:.3f}"


def ablation_tests(
    runs: pd.DataFrame,
    per_image_dir: Path,
    base_loss: str,
    losses: Sequence[str],
    protocol: str = "val_threshold",
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """The paired test of each loss in `losses` against `base_loss`, per dataset, for BSFNet's
    trained runs under `protocol`: one row (dataset, loss, base, protocol, delta, low, high,
    p_value, resamples, seed, images, seeds) per loss that has a base on its dataset.

    Only the seeds both experiments evaluated are paired; a pair without per-image files is
    left out (no row). The images are those of `reports/per_image/<run>.csv`
    (`results.per_image_counts`, which refuses runs scored on different test images).
    """
    from benchmark.reporting.results import TRAINED, per_image_counts

    trained = runs
    if "weights_provenance" in runs:
        trained = runs[runs["weights_provenance"] == TRAINED]
    bsfnet = trained[trained["model"] == "bsfnet"]
    rows = []
    for dataset in dict.fromkeys(bsfnet["dataset"]):
        of_dataset = bsfnet[bsfnet["dataset"] == dataset]
        base = _first_experiment(of_dataset, base_loss)
        if base is None:
            continue
        for loss in losses:
            other = _first_experiment(of_dataset, loss) if loss != base_loss else None
            if other is None:
                continue
            seeds = sorted(set(base["seed"]) & set(other["seed"]))
            if not seeds:
                continue
            names = [_run_of(base, s) for s in seeds] + [_run_of(other, s) for s in seeds]
            counts = per_image_counts(per_image_dir, names, protocol)
            if counts is None:
                continue
            result = paired_bootstrap(counts[: len(seeds)], counts[len(seeds) :], resamples, seed)
            rows.append(
                {"dataset": dataset, "loss": loss, "base": base_loss, "protocol": protocol}
                | asdict(result)
            )
    return pd.DataFrame(rows)


def _first_experiment(runs: pd.DataFrame, loss: str) -> pd.DataFrame | None:
    """The runs of the first experiment (by name) with `loss` among `runs`, or None."""
    of_loss = runs[runs["loss"] == loss]
    if of_loss.empty:
        return None
    first: pd.DataFrame = of_loss[of_loss["experiment"] == sorted(of_loss["experiment"])[0]]
    return first


def _run_of(runs: pd.DataFrame, seed: int) -> str:
    return str(runs[runs["seed"] == seed]["run"].iloc[0])
