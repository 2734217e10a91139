"""The pixel-difference baseline (benchmark/data/baseline.py): `best_f1` against sklearn, the
manifests of `cdbench synth` and `cdbench prepare` against a brute-force recomputation from the
written files, and its row (or the note saying how to get it) in the report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import f1_score

from benchmark.config import SynthConfig
from benchmark.data import layout
from benchmark.data.baseline import BASELINE_METHOD, DifferenceCounts, best_f1, pair_counts
from benchmark.data.prepare import prepare_dataset
from benchmark.data.synth import generate_synthetic
from benchmark.reporting.report import write_report
from benchmark.reporting.tables import BASELINE_MODEL
from tests.data.archives import write_cdd_archive, write_levir_archives
from tests.data.evaluations import same_counts, write_run

REPO = Path(__file__).resolve().parents[1]
LEVIR_TINY = {"train": 1, "val": 1, "test": 2}
"""Two 512x512 test images: 8 tiles of 256x256."""
CDD_TINY = {"train": 1, "val": 1, "test": 3}


def test_best_f1_agrees_with_sklearn_on_a_small_case() -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 12, 200)
    truth = rng.random(200) < 0.2 + 0.05 * values  # larger values are more often changed
    changed = np.bincount(values[truth], minlength=12)
    unchanged = np.bincount(values[~truth], minlength=12)
    f1, threshold = best_f1(changed, unchanged)
    by_sklearn = {int(t): f1_score(truth, values >= t) for t in np.unique(values)}
    assert f1 == pytest.approx(max(by_sklearn.values()))
    assert threshold == max(by_sklearn, key=lambda t: (by_sklearn[t], -t))
    # By hand: values 0, 1, 2, 3 with labels 0, 0, 1, 1 are separated at threshold 2.
    assert best_f1(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0])) == (1.0, 2)
    # Values 1 and 4 occur, 2 and 3 do not: the threshold is an occurring value.
    assert best_f1(np.array([0, 0, 0, 0, 1]), np.array([0, 1, 0, 0, 0])) == (1.0, 4)
    assert best_f1(np.zeros(4, dtype=np.int64), np.array([1, 1, 0, 0]))[0] == 0.0


def read_pairs(split_dir: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(A, B, change) of every pair written under `split_dir`, read back from the PNGs."""
    pairs = []
    for name in layout.list_pairs(split_dir):
        a, b, label = (
            np.asarray(Image.open(split_dir / part / f"{name}.png")) for part in layout.PARTS
        )
        pairs.append((a, b, label == 255))
    return pairs


def brute_force(split_dir: Path) -> tuple[float, float]:
    """(best F1, its threshold on the RGB difference norm) over the pooled pixels of
    `split_dir`, trying every occurring squared difference in a plain loop."""
    pairs = read_pairs(split_dir)
    squared = np.concatenate(
        [((a.astype(np.int64) - b.astype(np.int64)) ** 2).sum(axis=-1).ravel() for a, b, _ in pairs]
    )
    truth = np.concatenate([change.ravel() for _, _, change in pairs])
    best, best_t = -1.0, 0
    for t in np.unique(squared):  # ascending: the smallest threshold wins a tie
        predicted = squared >= t
        tp = int(np.count_nonzero(predicted & truth))
        fp = int(np.count_nonzero(predicted & ~truth))
        fn = int(np.count_nonzero(~predicted & truth))
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
        if f1 > best:
            best, best_t = f1, int(t)
    return best, math.sqrt(best_t)


@pytest.fixture(scope="module")
def levir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("levir")
    write_levir_archives(root / "raw", LEVIR_TINY)
    out = root / "prepared" / "levir-cd"
    return out, prepare_dataset("levir-cd", root / "raw", out, allow_partial=True, workers=1)


@pytest.fixture(scope="module")
def cdd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("cdd")
    (root / "raw").mkdir()
    write_cdd_archive(root / "raw", CDD_TINY, size=64, decoy=False)
    out = root / "prepared" / "cdd"
    return out, prepare_dataset("cdd", root / "raw", out, allow_partial=True, workers=2)


def test_prepared_cdd_records_the_baseline_of_its_written_test_split(
    cdd: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = cdd
    baseline = manifest["pixel_difference_baseline"]
    f1, threshold = brute_force(out / "test")
    assert (baseline["best_f1"], baseline["threshold"]) == (f1, threshold)
    assert (baseline["method"], baseline["split"]) == (BASELINE_METHOD, "test")
    assert baseline["files"].startswith(f"test/{{A,B,label}}/*.png ({CDD_TINY['test']} pairs")
    assert layout.read_manifest(out)["pixel_difference_baseline"] == baseline


def test_prepared_levir_records_the_baseline_of_its_tiles_equal_to_the_whole_images(
    levir: tuple[Path, dict[str, Any]],
) -> None:
    out, manifest = levir
    baseline = manifest["pixel_difference_baseline"]
    tiles = brute_force(out / "test")
    assert (baseline["best_f1"], baseline["threshold"]) == tiles
    assert brute_force(out / layout.WHOLE / "test") == tiles  # the tiles cover every pixel
    assert len(layout.list_pairs(out / "test")) == 4 * LEVIR_TINY["test"]
    assert "8 pairs, 256x256 tiles" in baseline["files"]
    assert "whole/test gives the same pooled counts" in baseline["files"]


def test_synthetic_manifest_baseline_is_the_recomputation_from_its_files(tmp_path: Path) -> None:
    config = SynthConfig(seed=5, size=64, train=1, val=1, test=6)
    manifest = generate_synthetic(tmp_path / "s", config, workers=1)
    baseline = manifest["pixel_difference_baseline"]
    counts = DifferenceCounts()
    for a, b, change in read_pairs(tmp_path / "s" / "test"):
        counts.add(pair_counts(a, b, change))
    assert baseline == counts.record("test")  # same keys and order, exactly; no `files`
    assert list(baseline) == ["best_f1", "threshold", "method", "split"]
    assert (baseline["best_f1"], baseline["threshold"]) == brute_force(tmp_path / "s" / "test")


def test_report_shows_a_real_datasets_baseline_row_and_a_note_for_an_old_manifest(
    cdd: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: dict[str, Any] = {}

    def figures(*args: Any) -> list[Path]:
        """Stands in for `write_figures` (drawing takes seconds; tests/test_report_figures.py
        checks the baseline's line): records the baselines it is given, draws nothing."""
        *_, folder, baselines = args
        folder.mkdir()
        drawn.update(baselines)
        return []

    monkeypatch.setattr("benchmark.reporting.figures.write_figures", figures)
    reports = tmp_path / "reports"
    write_run(reports, "ifn-ds-cdd", "ifn-ds-cdd", 0, same_counts((4, 1, 1, 10)))
    write_run(reports, "ifn-ds-levir-cd", "ifn-ds-levir-cd", 0, same_counts((3, 2, 2, 9)))
    old = tmp_path / "levir-cd" / "manifest.json"  # prepared before the baseline was scored
    old.parent.mkdir()
    old.write_text(json.dumps({"dataset": "levir-cd"}))
    cdd_manifest = cdd[0] / layout.MANIFEST
    write_report(
        reports,
        REPO / "references.yaml",
        resamples=10,
        tracking=False,
        manifests={"cdd": cdd_manifest, "levir-cd": old},
    )
    markdown = (reports / "comparison.md").read_text()
    f1 = 100 * cdd[1]["pixel_difference_baseline"]["best_f1"]
    cdd_table = markdown.split("## cdd", 1)[1].split("## ", 1)[0]
    (row,) = [line for line in cdd_table.splitlines() if line.startswith(f"| {BASELINE_MODEL}")]
    assert f"{f1:.2f}" in row
    levir_table = markdown.split("## levir-cd", 1)[1].split("## ", 1)[0]
    assert BASELINE_MODEL not in levir_table
    (note,) = [line for line in markdown.splitlines() if line.startswith("**levir-cd** has no")]
    assert str(old) in note
    assert "`cdbench prepare levir-cd` (or `dvc repro prepare@levir-cd`)" in note
    assert f"recorded in {cdd_manifest}" in markdown
    assert "cdbench prepare cdd" not in markdown
    assert list(drawn) == ["cdd"] and drawn["cdd"].f1 == pytest.approx(f1)  # the figures' line
    tex = (reports / "comparison.tex").read_text()
    assert tex.count(BASELINE_MODEL) == 1  # cdd's row only
