"""Figures of `cdbench report`: our results against the published ones, per dataset.

`write_figures` writes, for every dataset of the summary (sorted), PNGs into one folder:

- `f1-<dataset>.png`: mean F1 per experiment and protocol, seed spread, bootstrap interval and
  the published value where a source gives one;
- `ablation-<dataset>.png`: BSFNet's F1 by loss (only when the dataset has more than one loss);
- `pr-<dataset>.png`: test precision-recall curves of every run with its operating points;
  in these three the dataset's pixel-difference baseline (when its data manifest records one)
  is a dashed black line (in the PR figure: the curve of equal F1 through it);
- `training-<dataset>.png`: validation F1 and training loss against the step;
- `qualitative-<dataset>.png`: a few test pairs with each experiment's prediction coloured
  against the ground truth (`error_map`);

and, per run, into `runs/`:

- `runs/<run>-predictions.png`: its test pairs, one row each, in labelled panels: T0, T1,
  ground truth, prediction at the validation-chosen threshold, score map;
- `runs/<run>-pr.png`: its test precision-recall curve(s) with its operating points.

Inputs are the report's tables (`summary`: one row per experiment and protocol, figures in
percent; `runs`: one row per run, figures as fractions), the runs' curve files and the
thumbnails written by `cdbench evaluate` (`<run>.npz`: arrays, benchmark/evaluation/
thumbnails.py). A figure whose inputs are absent is skipped; a malformed thumbnails file raises
`ValueError` naming the file.
Every figure is in percent. Colours: one per experiment ("model / loss", from matplotlib's
"tab10" without its orange, olive, green and grey, so that no experiment looks like a protocol
or an iso-F1 curve), the same in every figure; protocols use the Okabe-Ito palette, `whole_*`
protocols hatched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.evaluation.thumbnails import Thumbnails, load_thumbnails
from benchmark.reporting.references import PROTOCOLS
from benchmark.reporting.results import LOSS_ORDER
from benchmark.reporting.tables import ABLATION_LOSSES, ABLATION_PROTOCOLS, Baseline

DPI = 120
MODEL_ORDER = ("bsfnet", "ifn")
PROTOCOL_COLOURS = {
    "fixed": "#E69F00",  # Okabe-Ito orange
    "val_threshold": "#56B4E9",  # sky blue
    "test_best_optimistic": "#009E73",  # bluish green
}
"""Bar colour of each protocol; a `whole_*` protocol takes its base colour, hatched."""
TAB10 = (
    "#d62728",  # red
    "#9467bd",  # purple
    "#1f77b4",  # blue
    "#8c564b",  # brown
    "#e377c2",  # pink
    "#17becf",  # cyan
)
"""Experiment colours: matplotlib's "tab10" without orange, olive, green and grey (near the
protocols' Okabe-Ito orange and green, and the iso-F1 curves' grey), copied so that colours
need no pyplot import."""
BASELINE_STYLE: dict[str, Any] = {"color": "black", "linestyle": "--", "linewidth": 1.2}
"""The pixel-difference baseline's line."""

TRUE_POSITIVE = (255, 255, 255)
TRUE_NEGATIVE = (0, 0, 0)
FALSE_POSITIVE = (230, 60, 60)
FALSE_NEGATIVE = (40, 160, 255)
RUNS_FOLDER = "runs"
"""Subfolder of the per-run figures."""
MAX_PAIRS = 4
"""Test pairs (rows) of a qualitative figure."""


def colour_of(experiment: str, experiments: Iterable[str]) -> str:
    """The "tab10" colour of `experiment`: its position among the sorted distinct `experiments`.

    The same list gives the same colour in every figure, whatever order the caller holds it in.

    Raises:
        ValueError: `experiment` is not among `experiments`.
    """
    names = sorted(set(experiments))
    if experiment not in names:
        raise ValueError(f"experiment {experiment!r} is not among {names}")
    return TAB10[names.index(experiment) % len(TAB10)]


def error_map(label: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Colour a prediction against its ground truth, pixel by pixel.

    Args:
        label: (H, W) ground truth; non-zero (True) is change.
        prediction: (H, W) predicted change; non-zero (True) is change.

    Returns:
        (H, W, 3) uint8: true positive white, true negative black, false positive red,
        false negative blue.

    Raises:
        ValueError: the two masks are not 2-D arrays of one shape.
    """
    truth = np.asarray(label).astype(bool)
    predicted = np.asarray(prediction).astype(bool)
    if truth.ndim != 2 or truth.shape != predicted.shape:
        raise ValueError(
            f"label {truth.shape} and prediction {predicted.shape}: expected two (H, W) masks "
            "of one shape"
        )
    image = np.zeros((*truth.shape, 3), dtype=np.uint8)
    image[truth & predicted] = TRUE_POSITIVE
    image[~truth & ~predicted] = TRUE_NEGATIVE
    image[~truth & predicted] = FALSE_POSITIVE
    image[truth & ~predicted] = FALSE_NEGATIVE
    return image


def score_grey(score: np.ndarray, kind: str) -> np.ndarray:
    """A score map as (H, W) uint8 grey: 0 ... 2 for a distance, 0 ... 1 for a probability,
    clipped, black = no change."""
    high = 2.0 if kind == "distance" else 1.0
    clipped = np.clip(np.asarray(score, dtype=np.float32), 0.0, high)
    return (clipped / high * 255).astype(np.uint8)


def mask_image(mask: np.ndarray) -> np.ndarray:
    """A (H, W) 0/1 mask as (H, W, 3) uint8: change white, no change black."""
    return np.repeat((np.asarray(mask) > 0).astype(np.uint8)[..., None] * 255, 3, axis=2)


def write_figures(
    summary: pd.DataFrame,
    runs: pd.DataFrame,
    curves: Mapping[str, Mapping[str, Any]],
    predictions: Path,
    out_dir: Path,
    baselines: Mapping[str, Baseline] | None = None,
) -> list[Path]:
    """Write every figure of every dataset of `summary` into `out_dir`; return their paths.

    The order is stable: datasets sorted; per dataset f1, ablation, pr, training, qualitative,
    then each run's predictions and pr figures (in `out_dir/runs`).

    Args:
        summary: one row per (experiment, protocol); figures in percent (module docstring).
        runs: one row per run with `<protocol>/<figure>` columns as fractions; may be empty.
        curves: run name -> that run's curves JSON (`test`, optionally `whole_test`, `training`).
        predictions: folder of `<run>.npz` thumbnails; may be absent.
        out_dir: created when absent.
        baselines: dataset -> its pixel-difference baseline (F1 in percent), drawn as a line.

    Raises:
        ValueError: a table lacks a required column, or a thumbnails file is malformed.
    """
    _require(
        summary, ("experiment", "model", "loss", "dataset", "protocol", "seeds", "f1"), "summary"
    )
    if not runs.empty:
        _require(runs, ("run", "experiment", "model", "loss", "dataset", "seed"), "runs")
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = _experiment_colours(summary, runs)
    thumbnails = _thumbnails(runs, predictions)
    written: list[Path] = []
    for dataset in sorted(summary["dataset"].unique()):
        rows = summary[summary["dataset"] == dataset]
        of_dataset = runs[runs["dataset"] == dataset] if not runs.empty else runs
        baseline = (baselines or {}).get(dataset)
        with _closing_new_figures():
            drawn = {  # False: the dataset lacks that figure's inputs
                "f1": _f1_figure(rows, dataset, out_dir / f"f1-{dataset}.png", baseline),
                "ablation": _ablation_figure(
                    rows, dataset, colours, out_dir / f"ablation-{dataset}.png", baseline
                ),
                "pr": _pr_figure(
                    of_dataset,
                    curves,
                    dataset,
                    colours,
                    out_dir / f"pr-{dataset}.png",
                    baseline=baseline,
                ),
                "training": _training_figure(
                    of_dataset, curves, dataset, colours, out_dir / f"training-{dataset}.png"
                ),
                "qualitative": _qualitative_figure(
                    of_dataset, thumbnails, dataset, out_dir / f"qualitative-{dataset}.png"
                ),
            }
            written += [out_dir / f"{name}-{dataset}.png" for name, done in drawn.items() if done]
            written += _run_figures(of_dataset, curves, thumbnails, colours, out_dir / RUNS_FOLDER)
    return written


def _thumbnails(runs: pd.DataFrame, predictions: Path) -> dict[str, Thumbnails]:
    """run -> its thumbnails (`predictions/<run>.npz`), for the runs that have a file."""
    if runs.empty:
        return {}
    found = {}
    for run in sorted(runs["run"]):
        path = predictions / f"{run}.npz"
        if path.is_file():
            found[str(run)] = load_thumbnails(path)
    return found


def _run_figures(
    runs: pd.DataFrame,
    curves: Mapping[str, Mapping[str, Any]],
    thumbnails: Mapping[str, Thumbnails],
    colours: dict[str, str],
    out_dir: Path,
) -> list[Path]:
    """Each run's predictions and pr figure (`<run>-predictions.png`, `<run>-pr.png`)."""
    written: list[Path] = []
    if runs.empty:
        return written
    for _, row in _ordered_runs(runs).iterrows():
        run = str(row["run"])
        out_dir.mkdir(parents=True, exist_ok=True)
        if run in thumbnails and len(thumbnails[run]):
            path = out_dir / f"{run}-predictions.png"
            _predictions_figure(run, thumbnails[run], path)
            written.append(path)
        one = runs[runs["run"] == run]
        path = out_dir / f"{run}-pr.png"
        if _pr_figure(one, curves, str(row["dataset"]), colours, path, title=run):
            written.append(path)
    return written


# --- helpers shared by the figures ---------------------------------------------------------


def _require(frame: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} table lacks columns {missing}; it has {list(frame.columns)}")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


@contextmanager
def _closing_new_figures() -> Iterator[None]:
    """Close the figures opened inside the block, also when drawing one of them failed."""
    pyplot = _pyplot()
    before = set(pyplot.get_fignums())
    try:
        yield
    finally:
        for number in set(pyplot.get_fignums()) - before:
            pyplot.close(number)


def _save(figure: Any, path: Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> None:
    """tight_layout within `rect`, save as PNG (legends outside the axes included), close."""
    figure.tight_layout(rect=rect)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    _pyplot().close(figure)


def _label(model: str, loss: str) -> str:
    return f"{model} / {loss}"


def _rank(values: Iterable[str], order: tuple[str, ...]) -> list[int]:
    return [order.index(v) if v in order else len(order) for v in values]


def _experiments(frame: pd.DataFrame) -> list[str]:
    """The experiments of `frame`, ordered by model, then loss (LOSS_ORDER), then name."""
    firsts = frame.drop_duplicates("experiment")
    keys = zip(
        _rank(firsts["model"], MODEL_ORDER),
        _rank(firsts["loss"], LOSS_ORDER),
        firsts["experiment"],
        strict=True,
    )
    return [experiment for _, _, experiment in sorted(keys)]


def _experiment_colours(summary: pd.DataFrame, runs: pd.DataFrame) -> dict[str, str]:
    """experiment -> colour, keyed on "model / loss" so one pair has one colour everywhere."""
    frames = [summary[["experiment", "model", "loss"]]]
    if not runs.empty:
        frames.append(runs[["experiment", "model", "loss"]])
    pairs = pd.concat(frames).drop_duplicates("experiment")
    labels = [_label(m, lo) for m, lo in zip(pairs["model"], pairs["loss"], strict=True)]
    return {
        experiment: colour_of(label, labels)
        for experiment, label in zip(pairs["experiment"], labels, strict=True)
    }


def _number(value: Any) -> float:
    """A float, NaN for anything missing."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def _protocol_style(protocol: str) -> dict[str, Any]:
    base = protocol.removeprefix("whole_")
    return {
        "facecolor": PROTOCOL_COLOURS.get(base, "#999999"),
        "hatch": "//" if protocol.startswith("whole_") else None,
        "edgecolor": "#333333",
        "linewidth": 0.5,
    }


PROTOCOL_NAMES = {
    "fixed": "fixed threshold",
    "val_threshold": "val-chosen threshold",
    "test_best_optimistic": "best on test (optimistic)",
}


def _protocol_name(protocol: str) -> str:
    """The reader's name of a protocol (as in comparison.md)."""
    name = PROTOCOL_NAMES.get(protocol.removeprefix("whole_"), protocol)
    return f"{name}, whole images" if protocol.startswith("whole_") else name


def _draw_bar(
    axes: Any, x: float, width: float, row: pd.Series, style: dict[str, Any], shown: set[str]
) -> tuple[float, float]:
    """One bar with its seed std and bootstrap interval.

    Adds "std" and "ci" to `shown` when it draws them (for the legend). Returns the lowest
    and the highest F1 drawn (the intervals' ends), NaN for a bar without F1.
    """
    f1 = _number(row.get("f1"))
    if math.isnan(f1):
        return math.nan, math.nan
    axes.bar(x, f1, width, **style)
    low_end, high_end = f1, f1
    std = _number(row.get("f1_std"))
    if int(row.get("seeds", 1)) > 1 and not math.isnan(std):
        axes.errorbar(x, f1, yerr=std, fmt="none", ecolor="#444444", elinewidth=1.4, capsize=3)
        low_end, high_end = f1 - std, f1 + std
        shown.add("std")
    low, high = _number(row.get("f1_ci_low")), _number(row.get("f1_ci_high"))
    if not (math.isnan(low) or math.isnan(high)):
        axes.errorbar(
            x + width * 0.3,
            (low + high) / 2,
            yerr=(high - low) / 2,
            fmt="none",
            ecolor="black",
            elinewidth=0.8,
            capsize=1.5,
        )
        low_end, high_end = min(low_end, low), max(high_end, high)
        shown.add("ci")
    return low_end, high_end


def _interval_legend(shown: set[str], sources: list[str]) -> list[Any]:
    """Legend handles for what was drawn: the seed std, the bootstrap CI, published values."""
    from matplotlib.lines import Line2D

    handles = []
    if "std" in shown:
        handles.append(
            Line2D([], [], color="#444444", linewidth=1.4, label="± sample std over seeds")
        )
    if "ci" in shown:
        handles.append(
            Line2D([], [], color="black", linewidth=0.8, label="95 % bootstrap CI (thin, right)")
        )
    if sources:
        handles.append(
            Line2D([], [], color="black", marker="D", linestyle="none", markeredgecolor="white",
                   label=_reference_label(sources))
        )  # fmt: skip
    return handles


def _baseline_line(axes: Any, baseline: Baseline | None) -> list[Any]:
    """The baseline's F1 as a dashed horizontal line across a bar chart; its legend handle."""
    from matplotlib.lines import Line2D

    if baseline is None:
        return []
    axes.axhline(baseline.f1, zorder=1.5, **BASELINE_STYLE)
    return [Line2D([], [], **BASELINE_STYLE, label=_baseline_label(baseline))]


def _baseline_label(baseline: Baseline) -> str:
    return f"pixel-difference baseline, F1 {baseline.f1:.1f} % (threshold best on test)"


def _reference_label(sources: list[str]) -> str:
    """Demo references are recorded scores, not publications: say which the marker is."""
    if all("synthetic demo" in source for source in sources):
        return "demo reference (recorded, not published)"
    return "published (sources in comparison.md)"


# --- f1-<dataset>.png ----------------------------------------------------------------------


def _f1_figure(
    rows: pd.DataFrame, dataset: str, path: Path, baseline: Baseline | None = None
) -> bool:
    """Mean F1 per experiment (groups) and protocol (bars), with the published values."""
    from matplotlib.patches import Patch

    pyplot = _pyplot()
    experiments = _experiments(rows)
    protocols = [p for p in PROTOCOLS if p in set(rows["protocol"])]
    protocols += sorted(set(rows["protocol"]) - set(protocols))
    width = 0.8 / len(protocols)
    plot_width = max(5.0, 1.0 + len(experiments) * max(1.8, 0.3 * len(protocols)))
    figure, axes = pyplot.subplots(figsize=(plot_width + 3.4, 4.8))
    shown: set[str] = set()
    sources: list[str] = []
    for group, experiment in enumerate(experiments):
        for k, protocol in enumerate(protocols):
            match = rows[(rows["experiment"] == experiment) & (rows["protocol"] == protocol)]
            if match.empty:
                continue
            row = match.iloc[0]
            x = group - 0.4 + width * (k + 0.5)
            extent = _draw_bar(axes, x, width, row, _protocol_style(protocol), shown)
            _draw_reference(axes, x, row, extent, sources)
    axes.set_xticks(range(len(experiments)))
    firsts = rows.drop_duplicates("experiment").set_index("experiment")
    axes.set_xticklabels(
        ["\n".join((str(firsts.at[e, "model"]), str(firsts.at[e, "loss"]))) for e in experiments]
    )
    axes.set(ylim=(0, 100), xlim=(-0.6, len(experiments) - 0.4), ylabel="F1 (%)")
    axes.set_xlabel("model / loss")
    axes.set_title(f"F1 on the {dataset} test split: ours (mean over seeds) vs references")
    handles = [Patch(label=_protocol_name(p), **_protocol_style(p)) for p in protocols]
    handles += _interval_legend(shown, sources) + _baseline_line(axes, baseline)
    _finish_bars(figure, axes, handles, "protocol", path)
    return True


def _finish_bars(figure: Any, axes: Any, handles: list[Any], title: str, path: Path) -> None:
    """Grid behind the bars, the legend outside on the right, save."""
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    axes.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title=title,
        title_fontsize=8,
    )
    _save(figure, path)


MISSING_TEXT_ROOM = 17.0
"""F1 points that the rotated "ref. missing" needs above a bar (y axis 0 ... 100)."""


def _draw_reference(
    axes: Any, x: float, row: pd.Series, extent: tuple[float, float], sources: list[str]
) -> None:
    """The published F1 as a black diamond, or "ref. missing" above the bar (or inside it)."""
    status = str(row.get("ref_status", "none") or "none")
    reference = row.get("reference", "")
    reference = "" if pd.isna(reference) else str(reference)
    if status == "available":
        value = _number(row.get("ref_f1"))
        if not math.isnan(value):
            axes.plot(x, value, "D", color="black", markeredgecolor="white", markersize=7)
            if reference and reference not in sources:
                sources.append(reference)
    elif status == "missing":
        low, high = (0.0, 0.0) if math.isnan(extent[0]) else extent
        text = {"rotation": 90, "ha": "center", "fontsize": 7}
        if high + 1.5 + MISSING_TEXT_ROOM <= 100:
            axes.text(x, high + 1.5, "ref. missing", va="bottom", **text)
        else:  # no room above: inside the bar, below its intervals, on a white box
            box = {"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.0}
            axes.text(x, low - 2.0, "ref. missing", va="top", bbox=box, **text)


# --- ablation-<dataset>.png ----------------------------------------------------------------


def _ablation_figure(
    rows: pd.DataFrame,
    dataset: str,
    colours: dict[str, str],
    path: Path,
    baseline: Baseline | None = None,
) -> bool:
    """BSFNet's F1 by loss (bars, one colour per loss) grouped by protocol; False if < 2 losses."""
    from matplotlib.patches import Patch

    bsfnet = rows[rows["model"] == "bsfnet"]
    losses = [loss for loss in ABLATION_LOSSES if loss in set(bsfnet["loss"])]
    losses += sorted(set(bsfnet["loss"]) - set(losses))
    protocols = [p for p in ABLATION_PROTOCOLS if p in set(bsfnet["protocol"])]
    if len(losses) < 2 or not protocols:
        return False
    pyplot = _pyplot()
    width = 0.8 / len(losses)
    plot_width = max(5.0, 1.0 + len(protocols) * max(2.2, 0.3 * len(losses)))
    figure, axes = pyplot.subplots(figsize=(plot_width + 3.0, 4.5))
    handles = []
    shown: set[str] = set()
    for k, loss in enumerate(losses):
        of_loss = bsfnet[bsfnet["loss"] == loss]
        colour = colours[of_loss["experiment"].iloc[0]]
        style: dict[str, Any] = {"facecolor": colour, "edgecolor": "#333333", "linewidth": 0.5}
        handles.append(Patch(label=f"bsfnet / {loss}", **style))
        for group, protocol in enumerate(protocols):
            match = of_loss[of_loss["protocol"] == protocol]
            if not match.empty:
                x = group - 0.4 + width * (k + 0.5)
                _draw_bar(axes, x, width, match.iloc[0], style, shown)
    axes.set_xticks(range(len(protocols)))
    axes.set_xticklabels([_protocol_name(p) for p in protocols])
    axes.set(ylim=(0, 100), xlim=(-0.6, len(protocols) - 0.4), ylabel="F1 (%)", xlabel="protocol")
    axes.set_title(f"BSFNet loss ablation on {dataset}")
    handles += _interval_legend(shown, []) + _baseline_line(axes, baseline)
    _finish_bars(figure, axes, handles, "loss", path)
    return True


# --- pr-<dataset>.png ----------------------------------------------------------------------


def _lowest_seeds(runs: pd.DataFrame) -> dict[str, Any]:
    """experiment -> its lowest seed."""
    lowest = runs.groupby("experiment")["seed"].min()
    return {str(experiment): seed for experiment, seed in lowest.items()}


def _run_style(row: pd.Series, lowest: dict[str, Any], colours: dict[str, str]) -> dict[str, Any]:
    """The first seed of an experiment drawn full; the others thinner and lighter."""
    first = row["seed"] == lowest[row["experiment"]]
    return {
        "color": colours[row["experiment"]],
        "linewidth": 1.8 if first else 1.0,
        "alpha": 1.0 if first else 0.5,
    }


def _ordered_runs(runs: pd.DataFrame) -> pd.DataFrame:
    order = {e: i for i, e in enumerate(_experiments(runs))}
    return runs.assign(_order=runs["experiment"].map(order)).sort_values(["_order", "seed", "run"])


def _pr_figure(
    runs: pd.DataFrame,
    curves: Mapping[str, Mapping[str, Any]],
    dataset: str,
    colours: dict[str, str],
    path: Path,
    title: str = "",
    baseline: Baseline | None = None,
) -> bool:
    """Test precision-recall curve of every run, with its fixed and val_threshold points.

    `title` names what is drawn (the dataset when empty); `baseline`: the pixel-difference
    baseline's F1, drawn as the dashed curve of equal F1 through it. The legend shows each
    element as drawn: experiments in their colour, operating points as markers filled in the
    run's colour, thinner lines only when an experiment has several seeds."""
    from matplotlib.lines import Line2D

    if runs.empty or not any(run in curves for run in runs["run"]):
        return False
    pyplot = _pyplot()
    figure, axes = pyplot.subplots(figsize=(6.5, 5.2))
    _iso_f1(axes)
    if baseline is not None:
        recall, precision = _iso_f1_curve(baseline.f1 / 100)
        axes.plot(100 * recall, 100 * precision, zorder=2, **BASELINE_STYLE)
    lowest = _lowest_seeds(runs)
    views = (("test", "", "-"), ("whole_test", "whole_", "--"))
    whole_drawn = False
    for _, row in _ordered_runs(runs).iterrows():
        style = _run_style(row, lowest, colours)
        run_curves = curves.get(row["run"], {})
        for view, prefix, linestyle in views:
            curve = run_curves.get(view)
            if curve:
                recall = 100 * np.asarray(curve["recall"], dtype=float)
                precision = 100 * np.asarray(curve["precision"], dtype=float)
                # Thresholds above every score predict nothing: precision is undefined there
                # (0 by convention), not a point of the curve.
                defined = ~((recall == 0) & (precision == 0))
                recall, precision = recall[defined], precision[defined]
                axes.plot(recall, precision, linestyle=linestyle, **style)
                whole_drawn = whole_drawn or bool(prefix)
            for protocol, marker in (("fixed", "o"), ("val_threshold", "s")):
                recall_point = _number(row.get(f"{prefix}{protocol}/recall"))
                precision_point = _number(row.get(f"{prefix}{protocol}/precision"))
                if math.isnan(recall_point) or math.isnan(precision_point):
                    continue
                whole = bool(prefix)  # whole images: open marker edged in the run's colour
                axes.plot(
                    100 * recall_point, 100 * precision_point, marker, markersize=6,
                    alpha=style["alpha"], zorder=3,
                    markerfacecolor="white" if whole else style["color"],
                    markeredgecolor=style["color"] if whole else "black",
                    markeredgewidth=1.6 if whole else 1.0,
                )  # fmt: skip
                whole_drawn = whole_drawn or whole
    experiments = _experiments(runs)
    handles = [Line2D([], [], color=colours[e], linewidth=1.8, label=e) for e in experiments]
    if runs.groupby("experiment")["run"].nunique().max() > 1:
        first = colours[experiments[0]]
        handles.append(
            Line2D([], [], color=first, linewidth=1.0, alpha=0.5, label="further seeds (thin)")
        )
    handles += [  # neutral markers: in the plot each is filled in its run's colour
        Line2D([], [], marker="o", linestyle="none", markerfacecolor="#555555",
               markeredgecolor="black", label="fixed threshold (run's colour)"),
        Line2D([], [], marker="s", linestyle="none", markerfacecolor="#555555",
               markeredgecolor="black", label="val-chosen threshold (run's colour)"),
    ]  # fmt: skip
    if whole_drawn:
        handles += [
            Line2D([], [], color="black", linestyle="-", label="tiles (filled markers)"),
            Line2D([], [], color="black", linestyle="--", label="whole images (open markers)"),
        ]
    handles.append(Line2D([], [], color=ISO_F1_COLOUR, linestyle=":", label="iso-F1 curves"))
    if baseline is not None:
        handles.append(Line2D([], [], **BASELINE_STYLE, label=_baseline_label(baseline)))
    axes.set(xlim=(0, 101), ylim=(0, 101), xlabel="recall (%)", ylabel="precision (%)")
    axes.set_title(f"Test precision-recall: {title or dataset}")
    axes.set_aspect("equal")
    axes.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    _save(figure, path)
    return True


ISO_F1_COLOUR = "#aaaaaa"


def _iso_f1_curve(f1: float) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) as fractions along the curve of equal F1 `f1` (precision <= 1)."""
    recall = np.linspace(f1 / 2 + 1e-3, 1.0, 200)
    precision = f1 * recall / (2 * recall - f1)
    keep = precision <= 1.0
    return recall[keep], precision[keep]


def _iso_f1(axes: Any) -> None:
    """Faint dotted curves of equal F1 (20 ... 80 %), labelled at their right end, under the
    data."""
    for f1 in (0.2, 0.4, 0.6, 0.8):
        recall, precision = _iso_f1_curve(f1)
        axes.plot(
            100 * recall, 100 * precision, color=ISO_F1_COLOUR, linestyle=":", linewidth=0.9,
            zorder=1,
        )  # fmt: skip
        axes.text(
            99, 100 * precision[-1] + 1, f"F1 {100 * f1:.0f} %", color="#777777", fontsize=7,
            ha="right", va="bottom", zorder=1,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 0.5},
        )  # fmt: skip


# --- training-<dataset>.png ----------------------------------------------------------------


def _series(records: Iterable[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the records that carry `key` and a step."""
    steps, values = [], []
    for record in records:
        value, step = _number(record.get(key)), _number(record.get("step"))
        if not (math.isnan(value) or math.isnan(step)):
            steps.append(step)
            values.append(value)
    return steps, values


def _training_figure(
    runs: pd.DataFrame,
    curves: Mapping[str, Mapping[str, Any]],
    dataset: str,
    colours: dict[str, str],
    path: Path,
) -> bool:
    """Validation F1 (left) and training loss (right, log y) against the step, per run."""
    if runs.empty:
        return False
    trained = [row for _, row in _ordered_runs(runs).iterrows()
               if curves.get(row["run"], {}).get("training")]  # fmt: skip
    if not trained:
        return False
    pyplot = _pyplot()
    figure, (val_axes, loss_axes) = pyplot.subplots(1, 2, figsize=(11, 4.3), sharex=True)
    lowest = _lowest_seeds(runs)
    legend: dict[str, Any] = {}  # label -> a line of that run
    for row in trained:
        records = curves[row["run"]]["training"]
        style = {**_run_style(row, lowest, colours), "marker": "o", "markersize": 3}
        label = f"{row['experiment']} (seed {row['seed']})"
        steps, f1 = _series(records, "val/f1")
        if steps:
            (legend[label],) = val_axes.plot(steps, [100 * v for v in f1], **style)
        steps, loss = _series(records, "train/loss")
        positive = [(s, v) for s, v in zip(steps, loss, strict=True) if v > 0]  # log scale
        if positive:
            (legend[label],) = loss_axes.plot(*zip(*positive, strict=True), **style)
    val_axes.set(
        xlabel="step (iteration)", ylabel="validation F1, fixed threshold (%)", ylim=(0, 100)
    )
    val_axes.set_title(f"Validation F1: {dataset}")
    loss_axes.set(xlabel="step (iteration)", ylabel="training loss (log scale)", yscale="log")
    loss_axes.set_title("Training loss (loss scales differ between losses)")
    for axes in (val_axes, loss_axes):
        axes.grid(alpha=0.3)
    loss_axes.legend(
        list(legend.values()),
        list(legend.keys()),
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        fontsize=8,
    )
    untrained = sorted(set(runs["run"]) - {row["run"] for row in trained})
    if untrained:
        note = "not shown (no training records in the curves file): " + ", ".join(untrained)
        figure.text(0.01, 0.0, note, fontsize=7, va="top", ha="left")
    _save(figure, path)
    return True


# --- qualitative-<dataset>.png -------------------------------------------------------------


def _shown_runs(runs: pd.DataFrame, thumbnails: Mapping[str, Thumbnails]) -> list[tuple[str, str]]:
    """(experiment, run) of each experiment's lowest seed that has thumbnails."""
    shown = []
    for experiment in _experiments(runs):
        of_experiment = runs[runs["experiment"] == experiment].sort_values(["seed", "run"])
        run = str(of_experiment["run"].iloc[0])
        if run in thumbnails and len(thumbnails[run]):
            shown.append((experiment, run))
    return shown


def _qualitative_figure(
    runs: pd.DataFrame, thumbnails: Mapping[str, Thumbnails], dataset: str, path: Path
) -> bool:
    """Test pairs (rows): T0 (image A), T1 (image B), ground truth, then each experiment's
    prediction coloured against the ground truth (`error_map`), each panel titled so."""
    if runs.empty:
        return False
    shown = _shown_runs(runs, thumbnails)
    if not shown:
        return False
    names = set.intersection(*(set(thumbnails[run].names.tolist()) for _, run in shown))
    pairs = sorted(names)[:MAX_PAIRS]
    if not pairs:
        return False
    rows = [_qualitative_row(thumbnails, pair, shown) for pair in pairs]
    titles = ["T0 (image A)", "T1 (image B)", "ground truth"] + [
        f"{experiment}\nerror map: prediction vs truth" for experiment, _ in shown
    ]
    figure, height = _panel_grid(rows, pairs, titles, small_from=3)
    figure.suptitle(
        f"Test predictions on {dataset} (first seed of each experiment, "
        "threshold chosen on validation)",
        fontsize=10,
    )
    figure.legend(handles=_error_legend(), loc="lower center", ncol=4, fontsize=8, frameon=False)
    _save(figure, path, rect=(0, 0.35 / height, 1, 1))  # room for the legend below
    return True


def _panel_grid(
    rows: list[list[np.ndarray]], pairs: list[str], titles: list[str], small_from: int
) -> tuple[Any, float]:
    """A figure of image panels: one row per pair (named on the left), titled columns
    (from column `small_from` on in a smaller font). Returns the figure and its height."""
    pyplot = _pyplot()
    columns = len(titles)
    height = 1.9 * len(pairs) + 0.7
    figure, grid = pyplot.subplots(
        len(pairs), columns, figsize=(1.9 * columns, height), squeeze=False
    )
    for i, (pair, cells) in enumerate(zip(pairs, rows, strict=True)):
        for j, cell in enumerate(cells):
            axes = grid[i][j]
            if cell.ndim == 2:
                axes.imshow(cell, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                axes.imshow(cell, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            if i == 0:
                axes.set_title(titles[j], fontsize=7 if j >= small_from else 9)
        grid[i][0].set_ylabel(pair, fontsize=8)
    return figure, height


def _error_legend() -> list[Any]:
    from matplotlib.patches import Patch

    return [
        Patch(facecolor=(red / 255, green / 255, blue / 255), edgecolor="#333333", label=label)
        for (red, green, blue), label in (
            (TRUE_POSITIVE, "true positive"),
            (FALSE_POSITIVE, "false positive"),
            (FALSE_NEGATIVE, "false negative"),
            (TRUE_NEGATIVE, "true negative"),
        )
    ]


def _qualitative_row(
    thumbnails: Mapping[str, Thumbnails], pair: str, shown: list[tuple[str, str]]
) -> list[np.ndarray]:
    """T0, T1 and ground truth of `pair` (first run's thumbnails), then each run's error map."""
    cells: list[np.ndarray] = []
    for _, run in shown:
        of_run = thumbnails[run]
        i = of_run.names.tolist().index(pair)
        label = of_run.label[i]
        if not cells:
            cells = [of_run.image_a[i], of_run.image_b[i], mask_image(label)]
        elif label.shape != cells[2].shape[:2]:
            raise ValueError(
                f"{run}.npz: pair {pair} of {label.shape[1]} x {label.shape[0]} pixels; the "
                f"same pair of another run has {cells[2].shape[1]} x {cells[2].shape[0]}"
            )
        cells.append(error_map(label, of_run.prediction[i]))
    return cells


# --- runs/<run>-predictions.png ------------------------------------------------------------


def _predictions_figure(run: str, thumbnails: Thumbnails, path: Path) -> None:
    """A run's test pairs (rows) in five labelled panels: T0, T1, ground truth, prediction at
    the validation-chosen threshold (white = change), score map (grey, black = no change)."""
    high = "2" if thumbnails.score_kind == "distance" else "1"
    titles = [
        "T0 (image A)",
        "T1 (image B)",
        "ground truth",
        f"prediction\n(score > {thumbnails.threshold:.3g}, val-chosen)",
        f"score: {thumbnails.score_kind}\n(black 0 ... white {high})",
    ]
    rows = [
        [
            thumbnails.image_a[i],
            thumbnails.image_b[i],
            mask_image(thumbnails.label[i]),
            mask_image(thumbnails.prediction[i]),
            score_grey(thumbnails.score[i], thumbnails.score_kind),
        ]
        for i in range(len(thumbnails))
    ]
    figure, _ = _panel_grid(rows, thumbnails.names.tolist(), titles, small_from=3)
    figure.suptitle(f"Test predictions of {run}", fontsize=10)
    _save(figure, path)
