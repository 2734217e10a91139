"""The report's tables: the comparison with the references and the BSFNet loss ablation.

`write_tables` writes, from `results.summarise`'s frame:
- `comparison.csv`: every column of the summary (numbers in percent, `*_per_seed` the seeds'
  values in the order of `runs`) - for scripts;
- `comparison.md`: "At a glance" (per dataset one line per experiment: its headline protocol,
  F1 and IoU mean +- std with each seed's value, the published value and the gap, and the
  pixel-difference baseline), how to read it, then per dataset one row per experiment and
  protocol (our mean +- std over seeds and each seed's F1, the seed count, the 95 % bootstrap
  interval of F1, the reference with the same protocol, the difference and the verdict) and the
  baseline's row, the caveats (an experiment with
  fewer evaluated seeds than params.yaml lists: `seeds` reads "1 of 3"; a run scored from a
  stale checkpoint: its F1 is marked `STALE_MARK`; both explained under "Caveats"), the
  ablation table with the paired bootstrap of each Δ F1 (benchmark/reporting/paired.py), the
  references that have no results yet, and the sources with their citations;
- `comparison.tex` and `ablation.tex` (booktabs, via pandas' Styler) and `ablation.csv`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pandas as pd

from benchmark.data.datasets.synthetic import SYNTHETIC
from benchmark.reporting.paired import p_cell
from benchmark.reporting.references import TOLERANCE_SIGMAS, Reference, tolerance_cell
from benchmark.reporting.results import DATASET_ORDER, TRAINED, seeds_cell

PROTOCOL_LABELS = {
    "fixed": "fixed threshold",
    "val_threshold": "val-chosen threshold",
    "test_best_optimistic": "best on test (optimistic)",
    "whole_fixed": "whole images, fixed threshold",
    "whole_val_threshold": "whole images, val-chosen threshold",
    "whole_test_best_optimistic": "whole images, best on test (optimistic)",
}
STALE_MARK = "†"
"""Marks F1 of a row with a run scored from a stale checkpoint (see "Caveats")."""
ABLATION_LOSSES = ("sisb", "bce", "contrastive")
ABLATION_PROTOCOLS = ("fixed", "val_threshold", "test_best_optimistic")
ABLATION_BASE = "sisb"
"""The loss every other BSFNet loss is compared with (BSFNet's own)."""
ABLATION_PROTOCOL = "val_threshold"
"""The protocol of the ablation's Δ F1 and its paired test (the honest one)."""
BASELINE_MODEL = "pixel difference"
"""The model column of the pixel-difference baseline's rows."""
BASELINE_PROTOCOL = "test_best_optimistic"
"""The baseline's threshold is the one that maximises F1 on the test split."""


@dataclass(frozen=True)
class Baseline:
    """A dataset's pixel-difference baseline: no learning, change where the per-pixel image
    difference reaches a threshold chosen on the test split (optimistic for the baseline)."""

    f1: float
    """Test F1 in percent."""
    method: str
    """How it is computed, in words (from the data manifest)."""
    source: str
    """The file it was read from."""


HOW_TO_READ = f"""\
Every figure is the change class in percent, from a confusion matrix pooled over the whole test
set. Ours is the mean over seeds (`± std` and, in brackets, each seed's F1 when there are
several); `F1 95% CI` is a bootstrap interval over test images (the seeds' mean F1 over 1000
resamples of the test pairs, thresholds held). Protocols: **fixed threshold** is the threshold
of the recipe's source (BSFNet: distance > 1; open-cd: probability > 0.3; CDLab: > 0.5);
**val-chosen threshold** maximises F1 on the validation split and applies it to test (the honest
choice); **best on test (optimistic)** picks the threshold on the test split itself, as BSFNet's
code reports it (an upper bound, never a result); **whole images** (LEVIR-CD) scores the 128
whole 1024 x 1024 test images instead of the 2048 tiles, as open-cd does. A published number is
compared only with ours under the same protocol: `Δ F1` = ours - published; the verdict is
*within tolerance* when |Δ| ≤ the tolerance (`tol.`, points), *below* or *above* otherwise, and
*reference missing* when the source is known but its numbers are not transcribed
(references.yaml says where to fill them in). Rows with no reference have no verdict. The
tolerance is the reference row's own; for a row that records its measured spread instead (one
run's F1 std over seeds and CPU kernel paths) it is {TOLERANCE_SIGMAS:g} x std / sqrt(seeds
evaluated), {TOLERANCE_SIGMAS:g} standard errors of our mean over seeds; otherwise
`--tolerance`."""


def cell(mean: float, std: float = math.nan, digits: int = 2) -> str:
    """`46.92`, `46.92 ± 1.20` with a seed std, `–` for a missing value."""
    if mean is None or math.isnan(mean):
        return "–"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _interval(low: float, high: float) -> str:
    return "–" if math.isnan(low) else f"[{low:.1f}, {high:.1f}]"


def per_seed(row: pd.Series, metric: str) -> str:
    """` (69.2, 63.6, 59.1)`: each seed's value (percent, the order of `runs`) of a row with
    several seeds, from its `<metric>_per_seed` column; empty for one seed or no column."""
    values = row.get(f"{metric}_per_seed")
    if not isinstance(values, str) or len(values.split()) < 2:
        return ""
    return " (" + ", ".join(f"{float(v):.1f}" for v in values.split()) + ")"


def add_per_seed(summary: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """`summary` with `f1_per_seed` and `iou_per_seed`: each run's value of the row's protocol
    in percent, space-separated, in the order of the row's `runs` (by seed)."""
    by_run = runs.set_index("run")
    columns: dict[str, list[str]] = {"f1_per_seed": [], "iou_per_seed": []}
    for _, row in summary.iterrows():
        for metric in ("f1", "iou"):
            values = [
                100 * _number(by_run, run, f"{row['protocol']}/{metric}")
                for run in str(row["runs"]).split()
            ]
            columns[f"{metric}_per_seed"].append(" ".join(f"{v:.4f}" for v in values))
    return summary.assign(**columns)


def _signed(value: float) -> str:
    return "" if math.isnan(value) else f"{value:+.2f}"


def _number(frame: pd.DataFrame, row: str, column: str) -> float:
    """The number at (`row`, `column`) of `frame`, as read by `.at` (pandas types it as any
    scalar; the summary's metric columns hold floats)."""
    return cast(float, frame.at[row, column])


def _tolerance(row: pd.Series) -> str:
    """The tolerance the verdict used (`references.tolerance_for`), with its formula when it
    was derived from a measured spread; empty for a row without a verdict."""
    if row["ref_status"] != "available":
        return ""
    return tolerance_cell(float(row["tolerance"]), str(row["tolerance_formula"]))


def source_numbers(summary: pd.DataFrame, extra: list[Reference]) -> dict[str, int]:
    """A footnote number for every reference source shown, in order of appearance."""
    numbers: dict[str, int] = {}
    for source in [*summary.get("reference", []), *(r.source for r in extra)]:
        if source and source not in numbers:
            numbers[source] = len(numbers) + 1
    return numbers


def loss_cell(row: pd.Series) -> str:
    """The loss and the form that ran, e.g. "contrastive (changed ×10, released)": the
    summary's `loss_form` (`benchmark.losses.describe_loss` of params.yaml's loss options,
    which the run's config digest covers) where the report was given it, else the loss name."""
    form = row.get("loss_form")
    return form if isinstance(form, str) and form else str(row["loss"])


def comparison_table(summary: pd.DataFrame, numbers: dict[str, int]) -> pd.DataFrame:
    """Display strings: one row per experiment x protocol."""
    rows = []
    for _, row in summary.iterrows():
        rows.append(
            {
                "dataset": row["dataset"],
                "model": row["model"],
                "loss": loss_cell(row),
                "protocol": PROTOCOL_LABELS[row["protocol"]],
                "seeds": seeds_cell(int(row["seeds"]), int(row.get("seeds_listed", 0))),
                "P": cell(row["precision"], row["precision_std"]),
                "R": cell(row["recall"], row["recall_std"]),
                "F1": cell(row["f1"], row["f1_std"])
                + (STALE_MARK if row.get("stale_runs") else "")
                + per_seed(row, "f1"),
                "F1 95% CI": _interval(row["f1_ci_low"], row["f1_ci_high"]),
                "IoU": cell(row["iou"], row["iou_std"]),
                "OA": cell(row["oa"], row["oa_std"]),
                "ref.": f"[{numbers[row['reference']]}]" if row["reference"] else "",
                "ref. F1": cell(row["ref_f1"]) if row["ref_status"] == "available" else "",
                "Δ F1": _signed(row["diff_f1"]),
                "tol.": _tolerance(row),
                "verdict": row["verdict"],
            }
        )
    return pd.DataFrame(rows)


def ablation_table(summary: pd.DataFrame, tests: pd.DataFrame | None = None) -> pd.DataFrame:
    """BSFNet's losses side by side per dataset: F1 under each tile protocol, IoU and the F1
    difference to SISB with the validation-chosen threshold, with its paired bootstrap
    interval and p-value where `tests` (`paired.ablation_tests`) has the pair."""
    bsfnet = summary[summary["model"] == "bsfnet"]
    rows = []
    for dataset in _datasets(bsfnet):
        part = bsfnet[bsfnet["dataset"] == dataset]
        if part["loss"].nunique() < 2:
            continue
        sisb = part[(part["loss"] == "sisb") & (part["protocol"] == "val_threshold")]["f1"]
        for loss in ABLATION_LOSSES:
            mine = part[part["loss"] == loss].set_index("protocol")
            if mine.empty:
                continue
            row = {
                "dataset": dataset,
                "loss": loss_cell(mine.iloc[0]),
                "seeds": int(mine["seeds"].iloc[0]),
            }
            for protocol in ABLATION_PROTOCOLS:
                if protocol in mine.index:
                    row[f"F1 {PROTOCOL_LABELS[protocol]}"] = cell(
                        _number(mine, protocol, "f1"), _number(mine, protocol, "f1_std")
                    )
            if "val_threshold" in mine.index:
                value = _number(mine, "val_threshold", "f1")
                row["IoU val-chosen threshold"] = cell(
                    _number(mine, "val_threshold", "iou"), _number(mine, "val_threshold", "iou_std")
                )
                row["F1 95% CI (val-chosen)"] = _interval(
                    _number(mine, "val_threshold", "f1_ci_low"),
                    _number(mine, "val_threshold", "f1_ci_high"),
                )
                row["Δ F1 vs SISB (val-chosen)"] = (
                    _signed(value - sisb.iloc[0]) if len(sisb) and loss != "sisb" else ""
                )
                test = _test_of(tests, dataset, loss)
                if test is not None:
                    row["Δ F1 vs SISB (val-chosen)"] = _signed(float(test["delta"]))
                row["Δ 95% CI (paired)"] = (
                    "" if test is None else f"[{test['low']:+.1f}, {test['high']:+.1f}]"
                )
                row["p (paired)"] = "" if test is None else p_cell(float(test["p_value"]))
            rows.append(row)
    return pd.DataFrame(rows)


def _test_of(tests: pd.DataFrame | None, dataset: str, loss: str) -> pd.Series | None:
    """The paired test of `loss` against SISB on `dataset`, or None."""
    if tests is None or tests.empty:
        return None
    match = tests[(tests["dataset"] == dataset) & (tests["loss"] == loss)]
    return None if match.empty else match.iloc[0]


def _paired_text(tests: pd.DataFrame | None) -> list[str]:
    """How the ablation's Δ F1 was tested, with the numbers of the test that ran."""
    if tests is None or tests.empty:
        return []
    first = tests.iloc[0]
    counts = tests.drop_duplicates("dataset")
    images = ", ".join(
        f"{d}: {n}" for d, n in zip(counts["dataset"], counts["images"], strict=True)
    )
    return [
        f"`Δ F1 vs SISB` is the other loss's F1 - SISB's with the val-chosen threshold, in "
        f"points, over the seeds both evaluated. Its interval and p-value come from a paired "
        f"bootstrap over test images (benchmark/reporting/paired.py): the test images "
        f"({images}) are drawn with replacement {int(first['resamples']):,} times (random "
        f"seed {int(first['seed'])}), the same draw for both losses and every seed; each "
        f"seed's F1 is recomputed from the drawn images' summed counts and averaged over "
        f"seeds, as the headline numbers are. `Δ 95% CI` is the 2.5th-97.5th percentile of "
        f"the resampled Δ (Efron & Tibshirani 1993, ch. 13); `p` is two-sided by the shift "
        f"method (Efron & Tibshirani 1993, ch. 16.4; Koehn 2004): the share of resampled Δ "
        f"at least |Δ| away from the observed Δ, (1 + count) / (B + 1). Thresholds are held, "
        f"so this is test-set noise only; training noise is the seeds' std beside it.",
        "",
    ]


def _datasets(frame: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(frame["dataset"]))
    return sorted(present, key=lambda d: DATASET_ORDER.index(d) if d in DATASET_ORDER else 99)


def headline_protocol(rows: pd.DataFrame) -> str:
    """The protocol of an experiment's "At a glance" line: val-chosen threshold when a
    published value exists for it, else the first protocol that has one, else val-chosen
    (or the first protocol measured)."""
    protocols = [str(p) for p in rows["protocol"]]
    published = [p for p, s in zip(protocols, rows["ref_status"], strict=True) if s == "available"]
    if ABLATION_PROTOCOL in published or not published:
        return ABLATION_PROTOCOL if ABLATION_PROTOCOL in protocols else protocols[0]
    return published[0]


def glance_table(
    summary: pd.DataFrame, numbers: dict[str, int], baseline: Baseline | None = None
) -> pd.DataFrame:
    """One line per experiment of one dataset (its headline protocol) and the baseline's."""
    rows = []
    for experiment in dict.fromkeys(summary["experiment"]):
        of_experiment = summary[summary["experiment"] == experiment]
        protocol = headline_protocol(of_experiment)
        row = of_experiment[of_experiment["protocol"] == protocol].iloc[0]
        available = row["ref_status"] == "available"
        rows.append(
            {
                "model": row["model"],
                "loss": loss_cell(row),
                "protocol": PROTOCOL_LABELS[protocol],
                "seeds": seeds_cell(int(row["seeds"]), int(row.get("seeds_listed", 0))),
                "F1": cell(row["f1"], row["f1_std"]) + per_seed(row, "f1"),
                "IoU": cell(row["iou"], row["iou_std"]) + per_seed(row, "iou"),
                "published F1": f"{row['ref_f1']:.2f} [{numbers[row['reference']]}]"
                if available
                else "",
                "gap": _signed(row["diff_f1"]) if available else "",
                "verdict": row["verdict"],
            }
        )
    if baseline is not None:
        rows.append(baseline_row(baseline, list(rows[0]) if rows else []))
    return pd.DataFrame(rows)


def baseline_row(baseline: Baseline, columns: list[str]) -> dict[str, str]:
    """The pixel-difference baseline as a row of a table with `columns` (F1 only)."""
    row = {column: "–" for column in columns}
    row.update(
        {
            "model": BASELINE_MODEL,
            "loss": "none (no training)",
            "protocol": PROTOCOL_LABELS[BASELINE_PROTOCOL],
            "F1": cell(baseline.f1),
        }
    )
    for column in ("dataset", "ref.", "ref. F1", "Δ F1", "tol.", "verdict", "published F1", "gap"):
        if column in row:
            row[column] = ""
    return row


def _baseline_text(
    baselines: Mapping[str, Baseline], no_baseline: Mapping[str, str] | None = None
) -> list[str]:
    """What the baseline rows are and, per dataset in `no_baseline` (dataset -> its manifest
    that records none), a one-line note saying how to get its row."""
    lines = []
    if baselines:
        first = next(iter(baselines.values()))
        lines += [
            f"The **{BASELINE_MODEL}** row is the baseline without learning ({first.method}; "
            f"recorded in {', '.join(b.source for b in baselines.values())}). Its threshold is "
            "chosen on the test split itself, so it is the best plain differencing can do "
            "there: a model below it has learned nothing useful.",
            "",
        ]
    for dataset, source in (no_baseline or {}).items():
        redo = (
            "`cdbench synth` (or `dvc repro synth`)"
            if dataset == SYNTHETIC.name
            else f"`cdbench prepare {dataset}` (or `dvc repro prepare@{dataset}`)"
        )
        lines += [
            f"**{dataset}** has no {BASELINE_MODEL} row: {source} records no pixel-difference "
            f"baseline (its data was prepared before the baseline was scored); re-run {redo}.",
            "",
        ]
    return lines


def render_markdown(
    summary: pd.DataFrame,
    extra: list[Reference],
    title: str = "Comparison with the references",
    tests: pd.DataFrame | None = None,
    baselines: Mapping[str, Baseline] | None = None,
    no_baseline: Mapping[str, str] | None = None,
) -> str:
    """comparison.md: at a glance, how to read, per-dataset tables, the ablation, unmatched
    references, sources. `tests`: the ablation's paired tests; `baselines`: dataset -> its
    pixel-difference baseline (a row in that dataset's tables); `no_baseline`: dataset -> its
    data manifest that records none (a note saying how to get the row)."""
    baselines = baselines or {}
    numbers = source_numbers(summary, extra)
    summary, from_files = split_trained(summary)
    table = comparison_table(summary, numbers)
    parts = [f"# {title}", "", "## At a glance", ""]
    parts += [
        "One line per experiment: its headline protocol (val-chosen threshold, or the "
        "protocol of its published value), our mean ± sample std over seeds with each seed's "
        "value in brackets (percent), the published F1 and the gap (ours - published). "
        "Every protocol is in the tables below.",
        "",
    ]
    for dataset in _datasets(summary):
        glance = glance_table(
            summary[summary["dataset"] == dataset], numbers, baselines.get(dataset)
        )
        parts += [f"**{dataset}**", "", glance.to_markdown(index=False, disable_numparse=True), ""]
    shown = set(summary["dataset"])
    parts += _baseline_text(
        {d: b for d, b in baselines.items() if d in shown},
        {d: s for d, s in (no_baseline or {}).items() if d in shown},
    )
    parts += ["## How to read the tables", "", HOW_TO_READ, ""]
    for dataset in _datasets(summary):
        rows = table[table["dataset"] == dataset].drop(columns="dataset")
        if dataset in baselines:
            rows = pd.concat(
                [rows, pd.DataFrame([baseline_row(baselines[dataset], list(rows.columns))])]
            )
        parts += [f"## {dataset}", "", rows.to_markdown(index=False, disable_numparse=True), ""]
    parts += _from_files_section(from_files, numbers)
    parts += _caveats(summary)
    ablation = ablation_table(summary, tests)
    parts += ["## Loss ablation (BSFNet: SISB vs BCE vs contrastive)", ""]
    if ablation.empty:
        parts += ["No dataset has BSFNet results with more than one loss yet.", ""]
    else:
        parts += [
            "No publication reports this ablation: these rows are the suite's own result. "
            "The loss column names the form that ran: `contrastive (plain)` weights both "
            "classes 1, `contrastive (changed ×10, released)` is BSFNet's released "
            "`contrastive_loss`; `sisb (hard IoU, released)` is its `BCL_v2 + IOUloss_v1`.",
            "",
            ablation.to_markdown(index=False, disable_numparse=True),
            "",
            *_paired_text(tests),
        ]
    if extra:
        parts += ["## References without results yet", ""]
        for reference in extra:
            values = ", ".join(
                f"{name} {value:.2f}"
                for name, value in reference.values.as_dict().items()
                if value is not None
            )
            parts.append(
                f"- {reference.label()} [{numbers[reference.source]}]: "
                f"{values or 'reference missing (values not transcribed)'}"
            )
        parts.append("")
    if numbers:
        parts += ["## Sources", ""]
        citations = {
            r: c
            for r, c in zip(summary.get("reference", []), summary.get("citation", []), strict=True)
        }
        citations.update({r.source: r.citation for r in extra})
        for source, number in numbers.items():
            citation = citations.get(source) or ""
            parts.append(f"{number}. {source}" + (f". {citation}" if citation else ""))
        parts.append("")
    notes = summary[summary["note"].astype(bool)][["experiment", "protocol", "note"]]
    if not notes.empty:
        parts += ["## Protocol notes", ""]
        for _, row in notes.iterrows():
            parts.append(
                f"- {row['experiment']}, {PROTOCOL_LABELS[row['protocol']]}: {row['note']}"
            )
        parts.append("")
    return "\n".join(parts)


def split_trained(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows of trained runs, rows of runs scored from a checkpoint file with `cdbench
    evaluate --weights`: an author's released checkpoint or one of ours), kept apart."""
    if "weights_provenance" not in summary:
        return summary, summary.iloc[0:0]
    trained = summary["weights_provenance"] == TRAINED
    return summary[trained], summary[~trained]


def _from_files_section(from_files: pd.DataFrame, numbers: dict[str, int]) -> list[str]:
    """ "Checkpoint files, scored under our protocols": one row per run and protocol, apart
    from the trained runs (never averaged with them, never in the ablation or `cdbench check`)."""
    if from_files.empty:
        return []
    table = comparison_table(from_files, numbers).drop(columns="seeds")
    table.insert(0, "run", list(from_files["runs"]))
    table.insert(1, "provenance", list(from_files["weights_provenance"]))
    return [
        "## Checkpoint files, scored under our protocols",
        "",
        "Not trained here: each row scores one checkpoint file (`cdbench evaluate EXPERIMENT "
        "--weights FILE`; an author's *released checkpoint* or a *cdbench checkpoint*) on the "
        "experiment's test split, under every protocol; its SHA-256 is in the run's metrics "
        "file. The reference and verdict columns answer: does the released model reach the "
        "published number, and under which protocol?",
        "",
        table.to_markdown(index=False, disable_numparse=True),
        "",
    ]


def _caveats(summary: pd.DataFrame) -> list[str]:
    """The "Caveats" section: experiments with seeds missing or stale checkpoints (or none)."""
    if "caveat" not in summary:
        return []
    noted = summary[summary["caveat"].astype(bool)].drop_duplicates("experiment")
    if noted.empty:
        return []
    lines = ["## Caveats", ""]
    for _, row in noted.iterrows():
        if row["missing_seeds"]:
            runs = [
                f"evaluate@{row['experiment']}-s{seed}" for seed in row["missing_seeds"].split()
            ]
            lines.append(
                f"- {row['experiment']}: {int(row['seeds'])} of {int(row['seeds_listed'])} seeds "
                f"evaluated (missing: seed {', '.join(row['missing_seeds'].split())}); its mean "
                f"is not yet the suite's result: `dvc repro {' '.join(runs)}`."
            )
        if row["stale_runs"]:
            lines.append(
                f"- {STALE_MARK} {row['experiment']}: {', '.join(row['stale_runs'].split())} "
                f"scored from a checkpoint trained under another configuration than params.yaml's "
                f"(`cdbench evaluate --allow-stale-checkpoint`; both digests are in its metrics "
                f"file): not params.yaml's recipe; retrain with `dvc repro train@<run>`."
            )
    return [*lines, ""]


def render_latex(table: pd.DataFrame) -> str:
    """A booktabs tabular of display strings (special characters escaped)."""
    escaped = table.map(_latex_escape)
    escaped.columns = [_latex_escape(str(c)) for c in table.columns]
    styler = escaped.style.hide(axis="index")
    return styler.to_latex(hrules=True, column_format="l" * len(table.columns))


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "–": "--",
    "×": r"$\times$",
}


def _latex_escape(value: object) -> str:
    """`value` as LaTeX text: special characters escaped, ±, Δ, – and × as LaTeX."""
    return "".join(_LATEX_SPECIAL.get(char, char) for char in str(value))


TABLE_FILES = ("comparison.md", "comparison.csv", "comparison.tex", "ablation.csv", "ablation.tex")
"""The files `write_tables` writes, in this order."""


def write_tables(
    summary: pd.DataFrame,
    extra: list[Reference],
    out_dir: Path,
    tests: pd.DataFrame | None = None,
    baselines: Mapping[str, Baseline] | None = None,
    no_baseline: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write `TABLE_FILES` into `out_dir` (the caller publishes them); return the paths.

    `tests`: the ablation's paired tests (`paired.ablation_tests`); `baselines`: dataset -> its
    pixel-difference baseline, a row of comparison.md and comparison.tex (not of the CSV,
    which holds our runs only); `no_baseline`: dataset -> its data manifest that records no
    baseline, a note in comparison.md saying how to get the row."""
    out_dir.mkdir(parents=True, exist_ok=True)
    numbers = source_numbers(summary, extra)
    trained, _ = split_trained(summary)
    ablation = ablation_table(trained, tests)
    comparison = comparison_table(trained, numbers)
    for dataset, baseline in (baselines or {}).items():
        if dataset in set(comparison.get("dataset", [])):
            row = baseline_row(baseline, list(comparison.columns)) | {"dataset": dataset}
            comparison = pd.concat([comparison, pd.DataFrame([row])], ignore_index=True)
    paths = {
        "comparison.md": render_markdown(
            summary, extra, tests=tests, baselines=baselines, no_baseline=no_baseline
        ),
        "comparison.csv": summary.to_csv(index=False, float_format="%.4f"),
        "comparison.tex": render_latex(comparison),
        "ablation.csv": ablation.to_csv(index=False),
        "ablation.tex": render_latex(ablation) if not ablation.empty else "% no ablation yet\n",
    }
    assert tuple(paths) == TABLE_FILES, "TABLE_FILES lists what write_tables writes"
    written = []
    for name, text in paths.items():
        path = out_dir / name
        path.write_text(text)
        written.append(path)
    return written
