"""The report's tables (benchmark/reporting/tables.py), written through `cdbench report`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark.cli import main
from benchmark.evaluation.metrics import Counts
from benchmark.reporting.references import load_references
from benchmark.reporting.results import load_runs, summarise
from benchmark.reporting.tables import ablation_table, write_tables
from tests.data.evaluations import PROTOCOLS, params_file, same_counts, write_run

REPO = Path(__file__).resolve().parents[1]


def test_report_says_which_loss_form_ran(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    for loss, counts in (("sisb", (4, 1, 1, 10)), ("contrastive", (3, 2, 2, 9))):
        name = f"bsfnet-{loss}-synthetic"
        write_run(reports, name, name, 0, same_counts(counts))
    params_path = params_file(
        tmp_path, {"bsfnet-sisb-synthetic": [0], "bsfnet-contrastive-synthetic": [0]}
    )
    data = yaml.safe_load(params_path.read_text())
    data["experiments"]["bsfnet-contrastive-synthetic"]["loss_options"] = {"changed_weight": 10.0}
    params_path.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    args = ["--params", str(params_path), "report", "--reports", str(reports)]
    args += ["--references", str(REPO / "references.yaml"), "--resamples", "10", "--no-tracking"]
    assert main(args) == 0
    markdown = (reports / "comparison.md").read_text()
    ablation = markdown.split("## Loss ablation", 1)[1]
    assert "| synthetic | contrastive (changed ×10, released) " in ablation  # table rows
    assert "| synthetic | sisb (hard IoU, released) " in ablation
    assert "contrastive (changed ×10, released)" in (reports / "ablation.csv").read_text()
    assert r"contrastive (changed $\times$10, released)" in (reports / "ablation.tex").read_text()
    # and the plain form is named as such
    data["experiments"]["bsfnet-contrastive-synthetic"]["loss_options"] = {}
    params_path.write_text(yaml.safe_dump(data))
    assert main(args) == 0
    ablation = (reports / "comparison.md").read_text().split("## Loss ablation", 1)[1]
    assert "| synthetic | contrastive (plain) " in ablation


def test_tables_ablation_latex_and_unmatched_references(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    for loss, counts in (("sisb", (4, 1, 1, 10)), ("bce", (3, 2, 2, 9))):
        write_run(
            reports, f"bsfnet-{loss}-synthetic", f"bsfnet-{loss}-synthetic", 0, same_counts(counts)
        )
    references = load_references(REPO / "references.yaml")
    summary = summarise(load_runs(reports / "metrics"), references, reports / "per_image")
    ablation = ablation_table(summary)
    assert list(ablation["loss"]) == ["sisb", "bce"]
    assert ablation.iloc[1]["Δ F1 vs SISB (val-chosen)"] == "-20.00"  # 60 - 80
    unmatched = [r for r in references if r.profile == "full"]
    paths = write_tables(summary, unmatched, reports)
    assert sorted(p.name for p in paths) == sorted(
        ["comparison.md", "comparison.csv", "comparison.tex", "ablation.csv", "ablation.tex"]
    )
    markdown = (reports / "comparison.md").read_text()
    assert "## synthetic" in markdown and "## Loss ablation" in markdown
    assert "bsfnet/sisb cdd fixed" in markdown and "reference missing" in markdown
    assert "| 80.00 " in markdown
    tex = (reports / "comparison.tex").read_text()
    assert r"\toprule" in tex and r"$\Delta$ F1" in tex and "best on test" in tex
    assert "ifn_ds" not in tex and "bsfnet" in tex
    table = pd.read_csv(reports / "comparison.csv")
    assert {"f1", "f1_std", "f1_ci_low", "ref_f1", "verdict"} <= set(table.columns)


def fabricated_runs(
    per_image_dir: Path, runs: dict[str, tuple[int, list[tuple[int, int, int, int]]]]
) -> pd.DataFrame:
    """The frame `load_runs` gives for synthetic runs {name: (seed, per-image counts)} (the same
    counts under every protocol), and their per-image files in `per_image_dir`."""
    per_image_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (seed, images) in runs.items():
        experiment = name.rsplit("-s", 1)[0]
        row: dict = {
            "run": name,
            "experiment": experiment,
            "model": "bsfnet",
            "loss": experiment.split("-")[1],
            "dataset": "synthetic",
            "recipe": "demo",
            "seed": seed,
            "weights_provenance": "trained run",
            "stale_checkpoint": None,
        }
        pooled = Counts(*np.sum(images, axis=0).tolist())
        table: dict = {"view": "tiles", "name": [f"test_{i:04d}" for i in range(len(images))]}
        for protocol in PROTOCOLS:
            row.update({f"{protocol}/{k}": v for k, v in pooled.as_dict().items()})
            row.update({f"{protocol}/{k}": v for k, v in pooled.scores().items()})
            for k, key in enumerate(("tp", "fp", "fn", "tn")):
                table[f"{protocol}/{key}"] = [image[k] for image in images]
        pd.DataFrame(table).to_csv(per_image_dir / f"{name}.csv", index=False)
        rows.append(row)
    return pd.DataFrame(rows)


def test_ablation_rows_carry_the_paired_test_and_comparison_md_opens_at_a_glance(
    tmp_path: Path,
) -> None:
    from benchmark.reporting.paired import ablation_tests, p_cell
    from benchmark.reporting.tables import Baseline, add_per_seed, render_markdown

    rng = np.random.default_rng(0)

    def images(found: float) -> list[tuple[int, int, int, int]]:
        changed = rng.integers(20, 60, size=12)
        tp = rng.binomial(changed, found)
        return [(int(t), 5, int(c - t), 900) for t, c in zip(tp, changed, strict=True)]

    per_image = tmp_path / "per_image"
    runs = fabricated_runs(
        per_image,
        {
            "bsfnet-sisb-synthetic-s0": (0, images(0.8)),
            "bsfnet-sisb-synthetic-s1": (1, images(0.7)),
            "bsfnet-bce-synthetic-s0": (0, images(0.3)),
            "bsfnet-bce-synthetic-s1": (1, images(0.4)),
        },
    )
    tests = ablation_tests(runs, per_image, "sisb", ("sisb", "bce", "contrastive"), resamples=400)
    (test,) = tests.to_dict("records")  # bce against sisb; no contrastive run
    summary = add_per_seed(summarise(runs, []), runs)
    f1 = summary.set_index(["experiment", "protocol"])["f1"]
    observed = (
        f1["bsfnet-bce-synthetic", "val_threshold"] - f1["bsfnet-sisb-synthetic", "val_threshold"]
    )
    assert test["delta"] == pytest.approx(observed)
    assert test["low"] < test["delta"] < test["high"] < 0
    assert test["p_value"] < 0.05
    assert (test["seeds"], test["images"], test["resamples"]) == (2, 12, 400)

    table = ablation_table(summary, tests).set_index("loss")
    assert table.at["bce", "p (paired)"] == p_cell(test["p_value"])
    assert table.at["bce", "Δ 95% CI (paired)"] == f"[{test['low']:+.1f}, {test['high']:+.1f}]"
    assert table.at["sisb", "p (paired)"] == ""

    baseline = Baseline(27.5, "plain differencing", "data/prepared/synthetic/manifest.json")
    markdown = render_markdown(summary, [], tests=tests, baselines={"synthetic": baseline})
    glance = markdown[markdown.index("## At a glance") : markdown.index("## How to read")]
    lines = [line for line in glance.splitlines() if line.startswith("| ")]
    assert [line.split("|")[1].strip() for line in lines[1:]] == [
        "bsfnet",
        "bsfnet",
        "pixel difference",
    ]
    sisb = runs[runs["experiment"] == "bsfnet-sisb-synthetic"]["val_threshold/f1"] * 100
    cell = f"{sisb.mean():.2f} ± {sisb.std():.2f} ({sisb.iloc[0]:.1f}, {sisb.iloc[1]:.1f})"
    assert cell in lines[1]  # mean ± std (seed 0, seed 1), val-chosen threshold
    assert "27.50" in lines[3] and "best on test (optimistic)" in lines[3]
    assert cell in markdown[markdown.index("## synthetic") :]  # the full table's F1 too
    assert "| pixel difference" in markdown[markdown.index("## synthetic") :]
    assert "drawn with replacement 400 times (random seed 0)" in markdown


def test_headline_protocol_is_the_published_one_when_val_chosen_has_none() -> None:
    from benchmark.reporting.tables import headline_protocol

    rows = pd.DataFrame({"protocol": list(PROTOCOLS), "ref_status": ["available", "none", "none"]})
    assert headline_protocol(rows) == "fixed"
    assert headline_protocol(rows.assign(ref_status="none")) == "val_threshold"
    assert headline_protocol(rows.assign(ref_status="available")) == "val_threshold"
