"""The report's figures (benchmark/reporting/figures.py) on hand-made summaries, runs and
thumbnails files (arrays built here, as `cdbench evaluate` writes them)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.evaluation.thumbnails import Thumbnails
from benchmark.reporting import figures
from benchmark.reporting.figures import colour_of, error_map, write_figures
from benchmark.reporting.tables import Baseline

METRICS = ("precision", "recall", "f1", "iou", "oa")
TILE_PROTOCOLS = ("fixed", "val_threshold", "test_best_optimistic")
LEVIR_PROTOCOLS = (*TILE_PROTOCOLS, *(f"whole_{p}" for p in TILE_PROTOCOLS))
SIDE = 16
"""Width and height of the fake thumbnails."""

SYNTHETIC = {  # experiment -> (model, loss, seeds)
    "bsfnet-sisb-synthetic": ("bsfnet", "sisb", (0, 1)),
    "bsfnet-bce-synthetic": ("bsfnet", "bce", (0,)),
    "bsfnet-contrastive-synthetic": ("bsfnet", "contrastive", (0,)),
    "ifn-ifn_ds-synthetic": ("ifn", "ifn_ds", (0,)),
}
LEVIR = {
    "bsfnet-sisb-levir-cd": ("bsfnet", "sisb", (3,)),
    "ifn-ifn_ds-levir-cd": ("ifn", "ifn_ds", (3,)),
}


def _summary_row(
    experiment: str, model: str, loss: str, dataset: str, protocol: str, seeds: int
) -> dict[str, Any]:
    rng = np.random.default_rng([ord(c) for c in experiment + protocol])
    row: dict[str, Any] = {
        "experiment": experiment,
        "model": model,
        "loss": loss,
        "dataset": dataset,
        "protocol": protocol,
        "seeds": seeds,
    }
    for metric in METRICS:
        row[metric] = float(rng.uniform(40, 95))
        row[f"{metric}_std"] = float(rng.uniform(0.5, 4)) if seeds > 1 else math.nan
    row["f1_ci_low"], row["f1_ci_high"] = row["f1"] - 2.0, row["f1"] + 1.5
    row["reference"], row["ref_status"], row["ref_f1"] = "", "none", math.nan
    if dataset == "levir-cd" and protocol == "whole_fixed":
        if model == "ifn":
            row["reference"], row["ref_status"], row["ref_f1"] = (
                "open-cd IFN table",
                "available",
                88.1,
            )
        else:
            row["reference"], row["ref_status"] = "BSFNet paper (no LEVIR-CD value)", "missing"
    return row


def _run_row(experiment: str, model: str, loss: str, dataset: str, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, *(ord(c) for c in experiment)])
    row: dict[str, Any] = {
        "run": f"{experiment}-s{seed}",
        "experiment": experiment,
        "model": model,
        "loss": loss,
        "dataset": dataset,
        "seed": seed,
    }
    protocols = LEVIR_PROTOCOLS if dataset == "levir-cd" else TILE_PROTOCOLS
    for protocol in protocols:
        precision, recall = rng.uniform(0.4, 0.95, size=2)
        row[f"{protocol}/threshold"] = float(rng.uniform(0.2, 0.8))
        row[f"{protocol}/precision"] = float(precision)
        row[f"{protocol}/recall"] = float(recall)
        row[f"{protocol}/f1"] = float(2 * precision * recall / (precision + recall))
        row[f"{protocol}/iou"] = float(row[f"{protocol}/f1"] / (2 - row[f"{protocol}/f1"]))
    return row


def _curve(shift: float) -> dict[str, list[float]]:
    threshold = np.linspace(0, 1, 50)
    recall = 1 - threshold**2
    precision = np.clip(0.2 + 0.7 * threshold + shift, 0, 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-9)
    return {
        "threshold": threshold.tolist(),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
    }


def _training(scale: float) -> list[dict[str, float]]:
    records: list[dict[str, float]] = []
    for step in range(50, 301, 50):
        records.append({"step": step, "train/loss": scale / step, "train/lr": 1e-3})
        if step % 100 == 0:
            val_f1 = min(step / 400 * (0.6 + 0.1 * scale), 1.0)
            records.append({"step": step, "train/loss": scale / step, "val/f1": val_f1})
    return records


def _thumbnails(names: list[str], seed: int, kind: str = "probability") -> Thumbnails:
    """Thumbnails of `names`: random images and scores, a 6 x 6 changed square in the label,
    a 7 x 6 one in the prediction."""
    rng = np.random.default_rng(seed)
    count = len(names)
    label = np.zeros((count, SIDE, SIDE), dtype=np.uint8)
    label[:, 4:10, 4:10] = 1
    prediction = np.zeros_like(label)
    prediction[:, 5:12, 3:9] = 1
    return Thumbnails(
        names=np.array(names, dtype=np.str_),
        image_a=rng.integers(0, 255, (count, SIDE, SIDE, 3), dtype=np.uint8),
        image_b=rng.integers(0, 255, (count, SIDE, SIDE, 3), dtype=np.uint8),
        label=label,
        prediction=prediction,
        score=rng.uniform(0, 1, (count, SIDE, SIDE)).astype(np.float16),
        threshold=0.5,
        score_kind=kind,
    )


def _inputs(
    root: Path,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, Any]], Path]:
    """summary, runs, curves and the predictions folder of two datasets (module constants)."""
    summary_rows, run_rows = [], []
    for dataset, experiments, protocols in (
        ("synthetic", SYNTHETIC, TILE_PROTOCOLS),
        ("levir-cd", LEVIR, LEVIR_PROTOCOLS),
    ):
        for experiment, (model, loss, seeds) in experiments.items():
            for protocol in protocols:
                summary_rows.append(
                    _summary_row(experiment, model, loss, dataset, protocol, len(seeds))
                )
            for seed in seeds:
                run_rows.append(_run_row(experiment, model, loss, dataset, seed))
    runs = pd.DataFrame(run_rows)
    curves: dict[str, dict[str, Any]] = {}
    predictions = root / "predictions"
    for k, row in runs.iterrows():
        run = row["run"]
        curves[run] = {"test": _curve(0.02 * k), "training": _training(1.0 + k)}
        if row["dataset"] == "levir-cd":
            curves[run]["whole_test"] = _curve(0.05)
        pairs = [f"pair_{pair:03d}" for pair in range(5)]
        if run == "ifn-ifn_ds-synthetic-s0":
            pairs = pairs[:4]  # pair_004 not in every run
        predictions.mkdir(exist_ok=True)
        _thumbnails(pairs, seed=k).save(predictions / f"{run}.npz")
    del curves["bsfnet-sisb-levir-cd-s3"]["training"]  # an older curves file
    return pd.DataFrame(summary_rows), runs, curves, predictions


def _names(paths: list[Path]) -> list[str]:
    return [path.name for path in paths]


def _run_figures(*runs: str) -> list[str]:
    return [f"{run}-{name}.png" for run in runs for name in ("predictions", "pr")]


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Every figure of the two datasets, drawn once for the module: (out folder, paths)."""
    root = tmp_path_factory.mktemp("figures")
    summary, runs, curves, predictions = _inputs(root)
    out = root / "out" / "figures"
    return out, write_figures(summary, runs, curves, predictions, out)


def _synthetic(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["dataset"] == "synthetic"]


def test_write_figures_writes_every_figure_in_a_stable_order(
    drawn: tuple[Path, list[Path]],
) -> None:
    out, written = drawn
    assert _names(written) == [
        "f1-levir-cd.png",
        "pr-levir-cd.png",
        "training-levir-cd.png",
        "qualitative-levir-cd.png",
        *_run_figures("bsfnet-sisb-levir-cd-s3", "ifn-ifn_ds-levir-cd-s3"),
        "f1-synthetic.png",
        "ablation-synthetic.png",
        "pr-synthetic.png",
        "training-synthetic.png",
        "qualitative-synthetic.png",
        *_run_figures(
            "bsfnet-sisb-synthetic-s0",
            "bsfnet-sisb-synthetic-s1",
            "bsfnet-bce-synthetic-s0",
            "bsfnet-contrastive-synthetic-s0",
            "ifn-ifn_ds-synthetic-s0",
        ),
    ]
    per_run = [path for path in written if path.parent != out]
    assert {path.parent for path in per_run} == {out / "runs"}
    on_disk = {path.relative_to(out) for path in out.rglob("*.png")}
    assert on_disk == {path.relative_to(out) for path in written}


def test_every_figure_is_a_readable_png_and_is_closed(drawn: tuple[Path, list[Path]]) -> None:
    from matplotlib import pyplot

    _, written = drawn
    for path in written:
        with Image.open(path) as image:
            image.verify()
            assert image.format == "PNG", path
            width, height = image.size
        assert 400 <= width <= 4000 and 250 <= height <= 3000, (path, width, height)
    assert pyplot.get_fignums() == []


def test_ablation_needs_more_than_one_bsfnet_loss(tmp_path: Path) -> None:
    summary = _synthetic(_inputs(tmp_path)[0])
    no_runs = pd.DataFrame()
    only_sisb = summary[(summary["model"] != "bsfnet") | (summary["loss"] == "sisb")]
    written = write_figures(only_sisb, no_runs, {}, tmp_path / "absent", tmp_path / "a")
    assert _names(written) == ["f1-synthetic.png"]
    two_losses = summary[summary["loss"] != "contrastive"]
    written = write_figures(two_losses, no_runs, {}, tmp_path / "absent", tmp_path / "b")
    assert _names(written) == ["f1-synthetic.png", "ablation-synthetic.png"]


def test_missing_optional_inputs_skip_their_figures(tmp_path: Path) -> None:
    summary, runs, _, _ = _inputs(tmp_path)
    summary, runs = _synthetic(summary), _synthetic(runs)
    no_training = {run: {"test": _curve(0.0)} for run in runs["run"]}  # older curves files
    written = write_figures(summary, runs, no_training, tmp_path / "absent", tmp_path / "a")
    runs_pr = [f"{run}-pr.png" for run in figures._ordered_runs(runs)["run"]]
    assert _names(written) == [
        "f1-synthetic.png",
        "ablation-synthetic.png",
        "pr-synthetic.png",
        *runs_pr,  # no thumbnails: no predictions figure, per run or per dataset
    ]
    assert len(runs_pr) == 5
    unknown_runs = {"another-run": {"test": _curve(0.0)}}
    written = write_figures(summary, runs, unknown_runs, tmp_path / "absent", tmp_path / "b")
    assert "pr-synthetic.png" not in _names(written)


def test_error_map_colours_each_outcome() -> None:
    label = np.array([[1, 1], [0, 0]], dtype=bool)
    prediction = np.array([[1, 0], [1, 0]], dtype=bool)
    expected = np.array(
        [
            [figures.TRUE_POSITIVE, figures.FALSE_NEGATIVE],
            [figures.FALSE_POSITIVE, figures.TRUE_NEGATIVE],
        ],
        dtype=np.uint8,
    )
    coloured = error_map(label, prediction)
    assert coloured.dtype == np.uint8 and coloured.shape == (2, 2, 3)
    np.testing.assert_array_equal(coloured, expected)
    np.testing.assert_array_equal(coloured[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(coloured[1, 1], [0, 0, 0])
    with pytest.raises(ValueError, match="one shape"):
        error_map(label, np.zeros((2, 3), dtype=bool))


def test_masks_and_scores_become_pixels() -> None:
    """The panels are drawn from the arrays: 0/1 masks as black/white, scores as grey over
    0 ... 1 (a probability) or 0 ... 2 (a distance), clipped."""
    mask = np.array([[0, 1]], dtype=np.uint8)
    np.testing.assert_array_equal(figures.mask_image(mask), [[[0, 0, 0], [255, 255, 255]]])
    score = np.array([[-0.5, 0.0, 0.5, 1.0, 1.5, 3.0]], dtype=np.float16)
    assert figures.score_grey(score, "probability").tolist() == [[0, 0, 127, 255, 255, 255]]
    assert figures.score_grey(score, "distance").tolist() == [[0, 0, 63, 127, 191, 255]]


def test_predictions_figure_is_drawn_from_the_arrays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's predictions figure: one row per pair, five labelled panels taken from the
    thumbnails (images, label and prediction as masks, the score in grey)."""
    from matplotlib import pyplot

    thumbnails = _thumbnails(["a", "b"], seed=1, kind="distance")
    drawn: list[tuple[list[list[np.ndarray]], list[str], list[str]]] = []
    real_grid = figures._panel_grid

    def recording_grid(
        rows: list[list[np.ndarray]], pairs: list[str], titles: list[str], small_from: int
    ) -> tuple[Any, float]:
        drawn.append((rows, pairs, titles))
        return real_grid(rows, pairs, titles, small_from)

    monkeypatch.setattr(figures, "_panel_grid", recording_grid)
    path = tmp_path / "run-predictions.png"
    figures._predictions_figure("run", thumbnails, path)
    ((rows, pairs, titles),) = drawn
    assert pairs == ["a", "b"]
    assert titles[:3] == ["T0 (image A)", "T1 (image B)", "ground truth"]
    assert "prediction" in titles[3] and "0.5" in titles[3]
    assert "distance" in titles[4] and "2" in titles[4]
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(row[0], thumbnails.image_a[i])
        np.testing.assert_array_equal(row[1], thumbnails.image_b[i])
        assert (row[2][..., 0] == 255).sum() == 36  # the 6 x 6 changed square
        assert (row[3][..., 0] == 255).sum() == 42  # the 7 x 6 predicted one
        np.testing.assert_array_equal(row[4], figures.score_grey(thumbnails.score[i], "distance"))
    with Image.open(path) as image:
        assert image.format == "PNG"
    assert pyplot.get_fignums() == []


def test_qualitative_cells_come_from_each_runs_arrays() -> None:
    first = _thumbnails(["a", "b"], seed=1)
    second = _thumbnails(["b"], seed=2)
    second.prediction[0] = 0  # predicts nothing: the square shows as false negatives
    shown = [("one", "run-1"), ("two", "run-2")]
    cells = figures._qualitative_row({"run-1": first, "run-2": second}, "b", shown)
    assert len(cells) == 5
    np.testing.assert_array_equal(cells[0], first.image_a[1])
    np.testing.assert_array_equal(cells[3], error_map(first.label[1], first.prediction[1]))
    expected = np.zeros((SIDE, SIDE, 3), dtype=np.uint8)
    expected[4:10, 4:10] = figures.FALSE_NEGATIVE
    np.testing.assert_array_equal(cells[4], expected)


def test_malformed_thumbnails_raise_naming_the_file(tmp_path: Path) -> None:
    from matplotlib import pyplot

    summary, runs, _, predictions = _inputs(tmp_path)
    bad = predictions / "bsfnet-bce-synthetic-s0.npz"
    arrays = dict(np.load(bad))
    arrays["score"] = arrays["score"].astype(np.float32)
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match=r"bsfnet-bce-synthetic-s0\.npz: .*score: float32"):
        write_figures(_synthetic(summary), _synthetic(runs), {}, predictions, tmp_path / "out")
    assert pyplot.get_fignums() == []
    bad.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match=r"s0\.npz: not a readable thumbnails file"):
        write_figures(_synthetic(summary), _synthetic(runs), {}, predictions, tmp_path / "out")


def test_summary_without_required_column_is_refused(tmp_path: Path) -> None:
    summary, runs, curves, predictions = _inputs(tmp_path)
    with pytest.raises(ValueError, match=r"summary table lacks columns \['f1'\]"):
        write_figures(summary.drop(columns="f1"), runs, curves, predictions, tmp_path / "out")


def test_colour_of_is_stable_and_distinct() -> None:
    names = ["ifn / ifn_ds", "bsfnet / sisb", "bsfnet / bce"]
    colours = [colour_of(name, names) for name in names]
    assert len(set(colours)) == 3
    assert colours == [colour_of(name, list(reversed(names))) for name in names]
    with pytest.raises(ValueError, match="bsfnet / dice"):
        colour_of("bsfnet / dice", names)


# --- baseline, legends and panel titles ---------------------------------------------------


def _kept_figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Make `figures._save` keep each figure (closed, not written) for inspection."""
    from matplotlib import pyplot

    kept: list[Any] = []

    def keep(figure: Any, path: Path, rect: Any = None) -> None:
        kept.append(figure)
        pyplot.close(figure)

    monkeypatch.setattr(figures, "_save", keep)
    return kept


def _legend_texts(figure: Any) -> list[str]:
    legends = [axes.get_legend() for axes in figure.axes if axes.get_legend()]
    legends += list(figure.legends)
    return [text.get_text() for legend in legends for text in legend.get_texts()]


@dataclasses.dataclass
class Kept:
    """The synthetic dataset's figure inputs (`_inputs`), and every figure drawn from them."""

    summary: pd.DataFrame
    runs: pd.DataFrame
    curves: dict[str, dict[str, Any]]
    predictions: Path
    figures: list[Any]


@pytest.fixture
def kept_synthetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Kept:
    """The synthetic inputs, with `figures._save` keeping each figure for inspection."""
    summary, runs, curves, predictions = _inputs(tmp_path)
    return Kept(
        _synthetic(summary), _synthetic(runs), curves, predictions, _kept_figures(monkeypatch)
    )


def test_baseline_is_a_dashed_line_in_the_bar_figures_and_an_iso_f1_curve_in_the_pr_figure(
    tmp_path: Path, kept_synthetic: Kept
) -> None:
    summary, runs, curves = kept_synthetic.summary, kept_synthetic.runs, kept_synthetic.curves
    colours = figures._experiment_colours(summary, runs)
    baseline = Baseline(f1=31.5, method="pixel differencing", source="manifest.json")
    kept = kept_synthetic.figures
    assert figures._f1_figure(summary, "synthetic", tmp_path / "f1.png", baseline)
    assert figures._ablation_figure(summary, "synthetic", colours, tmp_path / "a.png", baseline)
    assert figures._pr_figure(runs, curves, "synthetic", colours, tmp_path / "pr.png", "", baseline)
    assert figures._f1_figure(summary, "synthetic", tmp_path / "plain.png")
    label = "pixel-difference baseline, F1 31.5 % (threshold best on test)"
    for figure in kept[:2]:
        dashed = [line for line in figure.axes[0].get_lines() if line.get_linestyle() == "--"]
        assert [list(line.get_ydata()) for line in dashed] == [[31.5, 31.5]]
        assert label in _legend_texts(figure)
    (curve,) = [line for line in kept[2].axes[0].get_lines() if line.get_linestyle() == "--"]
    recall, precision = curve.get_xdata(), curve.get_ydata()
    np.testing.assert_allclose(2 * precision * recall / (precision + recall), 31.5)
    assert label in _legend_texts(kept[2])
    assert not any("baseline" in text for text in _legend_texts(kept[3]))


def test_pr_legend_shows_only_what_is_drawn_in_colours_unlike_the_protocols(
    tmp_path: Path, kept_synthetic: Kept
) -> None:
    from matplotlib.colors import to_rgb

    runs, curves, kept = kept_synthetic.runs, kept_synthetic.curves, kept_synthetic.figures
    colours = figures._experiment_colours(runs, runs)
    figures._pr_figure(runs, curves, "synthetic", colours, tmp_path / "pr.png")
    first_seeds = runs[runs["seed"] == 0]
    figures._pr_figure(first_seeds, curves, "synthetic", colours, tmp_path / "pr0.png")
    several, single = (_legend_texts(figure) for figure in kept)
    assert "further seeds (thin)" in several  # bsfnet-sisb-synthetic has seeds 0 and 1
    assert "further seeds (thin)" not in single
    assert "iso-F1 curves" in single
    # No experiment colour can be mistaken for a protocol's (f1 figure) or the iso-F1 grey.
    for colour in figures.TAB10:
        for other in (*figures.PROTOCOL_COLOURS.values(), figures.ISO_F1_COLOUR):
            distance = np.linalg.norm(np.subtract(to_rgb(colour), to_rgb(other)))
            assert distance > 0.25, (colour, other)


def test_qualitative_panels_are_titled_with_what_they_show(
    tmp_path: Path, kept_synthetic: Kept
) -> None:
    runs, kept = kept_synthetic.runs, kept_synthetic.figures
    thumbnails = figures._thumbnails(runs, kept_synthetic.predictions)
    assert figures._qualitative_figure(runs, thumbnails, "synthetic", tmp_path / "q.png")
    titles = [axes.get_title() for axes in kept[0].axes if axes.get_title()]
    experiments = figures._experiments(runs)
    assert titles == [
        "T0 (image A)",
        "T1 (image B)",
        "ground truth",
        *(f"{e}\nerror map: prediction vs truth" for e in experiments),
    ]
