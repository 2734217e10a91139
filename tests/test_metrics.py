"""Tests of benchmark.evaluation.metrics: hand-computed counts and a scikit-learn cross-check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from benchmark.evaluation.metrics import Counts, ImageHistograms, ScoreHistogram, ThresholdCounter

SEEDS = [0, 1, 2]
MASK_DTYPES = [torch.bool, torch.uint8, torch.int64, torch.float32]


def random_batches(seed: int, batches: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(score, mask) pairs of shape (2, 1, 8, 8): float64 scores in [-0.2, 1.2), a few of them
    exactly on the edges of `ScoreHistogram(0, 1, 10)` (to test the strict `>`), masks whose
    dtype changes from batch to batch."""
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for i in range(batches):
        score = torch.rand(2, 1, 8, 8, generator=generator, dtype=torch.float64) * 1.4 - 0.2
        score.view(-1)[:11] = torch.linspace(0, 1, 11, dtype=torch.float64)
        mask = torch.rand(2, 1, 8, 8, generator=generator) < 0.3 + 0.1 * i
        pairs.append((score, mask.to(MASK_DTYPES[(seed + i) % len(MASK_DTYPES)])))
    return pairs


def sklearn_scores(pairs: list[tuple[torch.Tensor, torch.Tensor]], threshold: float) -> dict:
    """scikit-learn's pooled scores of the change class for "changed iff score > threshold"."""
    y_true = np.concatenate([mask.numpy().reshape(-1) != 0 for _, mask in pairs]).astype(int)
    scores = np.concatenate([score.numpy().reshape(-1) for score, _ in pairs])
    y_pred = (scores > threshold).astype(int)
    options = {"pos_label": 1, "zero_division": 0}
    return {
        "precision": sk.precision_score(y_true, y_pred, **options),
        "recall": sk.recall_score(y_true, y_pred, **options),
        "f1": sk.f1_score(y_true, y_pred, **options),
        "iou": sk.jaccard_score(y_true, y_pred, **options),
        "oa": sk.accuracy_score(y_true, y_pred),
        "kappa": sk.cohen_kappa_score(y_true, y_pred),
    }


def test_counts_scores_by_hand() -> None:
    # tp=2, fp=1, fn=1, tn=4 (n=8): precision = 2/3, recall = 2/3, f1 = 4/6 = 2/3,
    # iou = 2/4, oa = 6/8. Chance agreement pe = (3*3 + 5*5)/64 = 34/64, so
    # kappa = (48/64 - 34/64) / (30/64) = 14/30 = 7/15.
    scores = Counts(tp=2, fp=1, fn=1, tn=4).scores()
    assert scores == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "iou": 0.5, "oa": 0.75, "kappa": 7 / 15}
    )
    assert Counts(tp=2, fp=1, fn=1, tn=4).as_dict() == {"tp": 2, "fp": 1, "fn": 1, "tn": 4}


def test_counts_scores_zero_division_and_negative_kappa() -> None:
    names = ["precision", "recall", "f1", "iou", "oa", "kappa"]
    assert Counts(0, 0, 0, 0).scores() == dict.fromkeys(names, 0.0)
    # No change anywhere, none predicted: every change-class ratio is 0/0 -> 0.0, oa = 5/5,
    # pe = (0*0 + 5*5)/25 = 1 -> kappa 0.0.
    assert Counts(0, 0, 0, 5).scores() == {**dict.fromkeys(names, 0.0), "oa": 1.0}
    # Everything predicted changed, nothing changed: precision 0/3, recall 0/0, f1 0/3.
    assert Counts(0, 3, 0, 0).scores() == dict.fromkeys(names, 0.0)
    # Always wrong, balanced: po = 0, pe = (2*2 + 2*2)/16 = 1/2, kappa = -1/2 / (1/2) = -1.
    assert Counts(0, 2, 2, 0).scores()["kappa"] == -1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_threshold_counter_matches_sklearn(seed: int) -> None:
    pairs = random_batches(seed)
    counter = ThresholdCounter([0.3, 0.5, 0.9])
    for score, mask in pairs:
        counter.update(score, mask)
    counts = counter.counts()
    assert len(counts) == 3
    for threshold, count in zip([0.3, 0.5, 0.9], counts, strict=True):
        assert count.tp + count.fp + count.fn + count.tn == 3 * 2 * 8 * 8
        assert count.scores() == pytest.approx(sklearn_scores(pairs, threshold))


def test_threshold_is_strict() -> None:
    counter = ThresholdCounter([0.5])
    counter.update(torch.tensor([0.5, 0.5000001, 0.4]), torch.tensor([1, 1, 0]))
    assert counter.counts() == [Counts(tp=1, fp=0, fn=1, tn=1)]


@pytest.mark.parametrize("seed", SEEDS)
def test_histogram_matches_sklearn_at_every_edge(seed: int) -> None:
    pairs = random_batches(seed)
    histogram = ScoreHistogram(0.0, 1.0, bins=10)
    for score, mask in pairs:
        histogram.update(score, mask)
    assert histogram.edges.dtype == torch.float64
    assert histogram.edges[0] == 0.0 and histogram.edges[-1] == 1.0
    for k, edge in enumerate(histogram.edges.tolist()):
        assert histogram.counts_at(k).scores() == pytest.approx(sklearn_scores(pairs, edge))


@pytest.mark.parametrize("seed", SEEDS)
def test_histogram_agrees_with_threshold_counter(seed: int) -> None:
    histogram = ScoreHistogram(0.0, 1.0, bins=10)
    counter = ThresholdCounter(histogram.edges.tolist())
    for score, mask in random_batches(seed):
        histogram.update(score, mask)
        counter.update(score, mask)
    assert [histogram.counts_at(k) for k in range(11)] == counter.counts()


@pytest.mark.parametrize("seed", SEEDS)
def test_best_threshold_is_the_brute_force_maximum(seed: int) -> None:
    histogram = ScoreHistogram(0.0, 1.0, bins=10)
    for score, mask in random_batches(seed):
        histogram.update(score, mask)
    f1 = [histogram.counts_at(k).scores()["f1"] for k in range(11)]
    best_k = f1.index(max(f1))  # the first maximum: the lowest threshold
    threshold, counts = histogram.best_threshold()
    assert threshold == histogram.edges[best_k].item()
    assert counts == histogram.counts_at(best_k)


def test_best_threshold_ties_go_to_the_lowest_edge() -> None:
    histogram = ScoreHistogram(0.0, 1.0, bins=4)  # edges 0, .25, .5, .75, 1
    # Changed pixels score 0.9, unchanged 0.1: every threshold in [0.25, 0.75] gives F1 = 1.
    histogram.update(torch.tensor([0.9, 0.9, 0.1]), torch.tensor([1, 1, 0]))
    assert histogram.best_threshold() == (0.25, Counts(tp=2, fp=0, fn=0, tn=1))


@pytest.mark.parametrize("seed", SEEDS)
def test_pr_curve_matches_sklearn(seed: int) -> None:
    pairs = random_batches(seed)
    histogram = ScoreHistogram(0.0, 1.0, bins=10)
    for score, mask in pairs:
        histogram.update(score, mask)
    curve = histogram.pr_curve()
    assert curve["threshold"] == histogram.edges.tolist()
    for i, edge in enumerate(curve["threshold"]):
        expected = sklearn_scores(pairs, edge)
        for name in ["precision", "recall", "f1"]:
            assert curve[name][i] == pytest.approx(expected[name])


def test_pooled_f1_is_not_the_mean_of_per_image_f1() -> None:
    # Image 1: one changed pixel, found (F1 = 1). Image 2: one changed pixel found and three
    # false alarms (F1 = 2/(2+3) = 0.4). Mean of the images: 0.7. Pooled: tp=2, fp=3, fn=0,
    # F1 = 4/(4+3) = 4/7.
    score = torch.tensor([[0.9, 0.1, 0.1, 0.1], [0.9, 0.9, 0.9, 0.9]])
    mask = torch.tensor([[1, 0, 0, 0], [1, 0, 0, 0]])
    counter = ThresholdCounter([0.5])
    counter.update(score, mask)
    per_image = []
    for i in range(2):
        single = ThresholdCounter([0.5])
        single.update(score[i], mask[i])
        per_image.append(single.counts()[0].scores()["f1"])
    assert per_image == pytest.approx([1.0, 0.4])
    assert counter.counts()[0] == Counts(tp=2, fp=3, fn=0, tn=3)
    assert counter.counts()[0].scores()["f1"] == pytest.approx(4 / 7)


@pytest.mark.parametrize("accumulator", [ThresholdCounter([0.5]), ScoreHistogram(0.0, 1.0, 4)])
def test_shape_mismatch_names_both_shapes(accumulator: ThresholdCounter | ScoreHistogram) -> None:
    with pytest.raises(ValueError, match=r"score \(2, 1, 4, 4\) and mask \(2, 4, 4\)"):
        accumulator.update(torch.rand(2, 1, 4, 4), torch.zeros(2, 4, 4))


def test_scores_outside_the_range_land_in_the_end_buckets() -> None:
    histogram = ScoreHistogram(0.0, 1.0, bins=4)
    # -5 and 0.0 (= low) are below every threshold; 1.0 (= high) is above all but the last;
    # 5 is above every threshold, the last one (high) included.
    histogram.update(torch.tensor([-5.0, 0.0, 1.0, 5.0]), torch.tensor([0, 1, 0, 1]))
    state = histogram.tensors()[0]
    assert state.tolist() == [[1, 0, 0, 0, 1, 0], [1, 0, 0, 0, 0, 1]]
    assert histogram.counts_at(0) == Counts(tp=1, fp=1, fn=1, tn=1)
    assert histogram.counts_at(3) == Counts(tp=1, fp=1, fn=1, tn=1)
    assert histogram.counts_at(4) == Counts(tp=1, fp=0, fn=1, tn=2)


def test_nan_scores_are_reported_when_results_are_read() -> None:
    counter = ThresholdCounter([0.5])
    histogram = ScoreHistogram(0.0, 1.0, bins=4)
    score = torch.tensor([0.2, float("nan"), 0.7, float("nan")])
    mask = torch.tensor([0, 1, 1, 0])
    counter.update(score, mask)  # no error (and no host synchronisation) while updating
    histogram.update(score, mask)
    assert counter.tensors()[1].tolist() == [2]
    with pytest.raises(ValueError, match="2 pixel score"):
        counter.counts()
    for read in [histogram.best_threshold, histogram.pr_curve, lambda: histogram.counts_at(1)]:
        with pytest.raises(ValueError, match="2 pixel score"):
            read()


def test_counts_at_threshold_needs_an_edge() -> None:
    histogram = ScoreHistogram(0.0, 1.0, bins=10)
    histogram.update(torch.tensor([0.35, 0.75]), torch.tensor([0, 1]))
    assert histogram.counts_at_threshold(0.3) == Counts(tp=1, fp=1, fn=0, tn=0)
    assert histogram.counts_at_threshold(0.5) == Counts(tp=1, fp=0, fn=0, tn=1)
    with pytest.raises(ValueError, match=r"nearest edges are \[0\.3.*, 0\.4.*\]"):
        histogram.counts_at_threshold(0.35)
    with pytest.raises(ValueError, match=r"nearest edges are \[1\.0\]"):
        histogram.counts_at_threshold(2.0)
    with pytest.raises(ValueError, match=r"must be in 0\.\.10"):
        histogram.counts_at(11)


def test_tensors_can_be_summed_across_processes() -> None:
    # What dist.all_reduce(SUM) does: add one rank's state into another's, in place.
    pairs = random_batches(0, batches=4)
    whole, rank0, rank1 = (ScoreHistogram(0.0, 1.0, bins=10) for _ in range(3))
    counters = [ThresholdCounter([0.3, 0.5]) for _ in range(3)]
    for i, (score, mask) in enumerate(pairs):
        for accumulator in [whole, counters[0], (rank0, rank1)[i % 2], counters[1 + i % 2]]:
            accumulator.update(score, mask)
    for mine, theirs in [(rank0, rank1), (counters[1], counters[2])]:
        for tensor, other in zip(mine.tensors(), theirs.tensors(), strict=True):
            assert tensor.dtype == torch.int64
            tensor += other
    assert rank0.pr_curve() == whole.pr_curve()
    assert counters[1].counts() == counters[0].counts()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one finite threshold"):
        ThresholdCounter([])
    with pytest.raises(ValueError, match="at least one finite threshold"):
        ThresholdCounter([0.5, float("nan")])
    with pytest.raises(ValueError, match="low < high"):
        ScoreHistogram(1.0, 0.0)
    with pytest.raises(ValueError, match="bins >= 1"):
        ScoreHistogram(0.0, 1.0, bins=0)


DEVICES = ["cpu", torch.device("cpu")]
if torch.cuda.is_available():
    DEVICES.append("cuda")


@pytest.mark.parametrize("device", DEVICES)
def test_device_argument(device: str | torch.device) -> None:
    pairs = random_batches(1)
    counter = ThresholdCounter([0.5], device=device)
    histogram = ScoreHistogram(0.0, 1.0, bins=10, device=device)
    for score, mask in pairs:
        counter.update(score.to(device), mask.to(device))
        histogram.update(score, mask)  # on the CPU: moved to the device
    assert all(t.device.type == torch.device(device).type for t in counter.tensors())
    assert all(t.device.type == torch.device(device).type for t in histogram.tensors())
    assert histogram.edges.device.type == "cpu"
    assert counter.counts()[0].scores() == pytest.approx(sklearn_scores(pairs, 0.5))
    assert histogram.counts_at(5) == counter.counts()[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_per_image_histograms_give_each_images_exact_counts(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    pooled = ScoreHistogram(0.0, 1.0, bins=20)
    images = ImageHistograms(pooled)
    batches = [
        (
            torch.rand(b, 1, 5, 6, generator=generator),
            torch.rand(b, 1, 5, 6, generator=generator) > 0.6,
        )
        for b in (3, 2)
    ]
    for score, mask in batches:
        pooled.update(score, mask)
        images.update(score, mask)
    assert len(images) == 5
    score = torch.cat([s for s, _ in batches])
    mask = torch.cat([m for _, m in batches])
    for k in (0, 7, 10, 20):
        threshold = float(pooled.edges[k])
        per_image = images.counts_at_threshold(threshold)
        for i in range(5):  # each image's counts, as a ThresholdCounter on it alone sees them
            counter = ThresholdCounter([threshold])
            counter.update(score[i], mask[i])
            assert Counts(*per_image[i].tolist()) == counter.counts()[0]
        assert Counts(*per_image.sum(0).tolist()) == pooled.counts_at(k)
    with pytest.raises(ValueError, match="not an edge"):
        images.counts_at_threshold(0.123)
