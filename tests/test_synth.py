"""The synthetic dataset: determinism, layout, manifest, difficulty and the `cdbench synth` CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import precision_recall_curve

from benchmark.cli import main
from benchmark.config import SynthConfig
from benchmark.data import synth
from benchmark.data.layout import PARTS, SPLITS, read_manifest
from benchmark.errors import DataError
from tests.conftest import write_repo_params
from tests.data.processes import children, ended, wait_for

SMALL = SynthConfig(seed=0, size=128, train=6, val=6, test=24)


def read_split(root: Path, split: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(A, B, label) arrays of every pair of a split, read back from the PNGs."""
    pairs = []
    for path in sorted((root / split / "label").glob("*.png")):
        a = np.asarray(Image.open(root / split / "A" / path.name))
        b = np.asarray(Image.open(root / split / "B" / path.name))
        pairs.append((a, b, np.asarray(Image.open(path))))
    return pairs


def difference_norm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a.astype(np.float64) - b.astype(np.float64)) ** 2).sum(axis=2))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("synth") / "synthetic"
    manifest = synth.generate_synthetic(root, SMALL, workers=1)
    return root, manifest


def test_layout_counts_and_image_formats(small: tuple[Path, dict[str, Any]]) -> None:
    root, manifest = small
    for split in SPLITS:
        count = getattr(SMALL, split)
        for part in PARTS:
            assert len(list((root / split / part).glob("*.png"))) == count
        assert manifest["splits"][split]["pairs"] == count
        a, b, label = read_split(root, split)[0]
        assert a.shape == b.shape == (SMALL.size, SMALL.size, 3)
        assert a.dtype == b.dtype == label.dtype == np.uint8
        assert label.shape == (SMALL.size, SMALL.size)
    assert not list(root.parent.glob(".synthetic.*")), "staging folder left behind"


def test_manifest_records_config_fractions_and_no_duplicates(
    small: tuple[Path, dict[str, Any]],
) -> None:
    root, manifest = small
    assert read_manifest(root) == json.loads(json.dumps(manifest))
    assert manifest["seed"] == SMALL.seed
    assert manifest["generator"]["size"] == SMALL.size
    assert manifest["generator"]["test"] == SMALL.test
    assert manifest["duplicates_across_splits"] == 0
    pooled_changed = pooled_total = 0
    for split in SPLITS:
        labels = [label for _, _, label in read_split(root, split)]
        values = np.unique(np.stack(labels))
        assert set(values.tolist()) <= {0, 255}
        changed = sum(int((label == 255).sum()) for label in labels)
        total = sum(label.size for label in labels)
        assert manifest["splits"][split]["changed_fraction"] == pytest.approx(changed / total)
        assert 0 < changed / total < 0.3
        pooled_changed += changed
        pooled_total += total
    assert 0.03 < pooled_changed / pooled_total < 0.2


def test_same_seed_is_byte_identical_whatever_the_workers(
    small: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, manifest = small
    again = synth.generate_synthetic(tmp_path / "again", SMALL, workers=2)
    assert again == manifest  # every file's sha256, and the baseline
    name = "test_0003.png"
    for part in PARTS:
        assert (tmp_path / "again" / "test" / part / name).read_bytes() == (
            root / "test" / part / name
        ).read_bytes()


def test_different_seeds_differ(small: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    _, manifest = small
    config = SynthConfig(seed=1, size=SMALL.size, train=2, val=2, test=2)
    other = synth.generate_synthetic(tmp_path / "other", config, workers=1)
    for split in SPLITS:
        for key, digest in other["splits"][split]["files"].items():
            if key.startswith(("A/", "B/")):
                assert manifest["splits"][split]["files"][key] != digest, key


def best_f1_from_pngs(root: Path) -> tuple[float, float]:
    """Best F1 over thresholds of the RGB difference norm, by sklearn, from the test PNGs."""
    pairs = read_split(root, "test")
    scores = np.concatenate([difference_norm(a, b).ravel() for a, b, _ in pairs])
    truth = np.concatenate([(label == 255).ravel() for _, _, label in pairs])
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    best = int(np.argmax(f1[:-1]))
    return float(f1[best]), float(thresholds[best])


def test_baseline_in_manifest_matches_an_independent_computation(
    small: tuple[Path, dict[str, Any]],
) -> None:
    root, manifest = small
    baseline = manifest["pixel_difference_baseline"]
    assert baseline["split"] == "test"
    assert "Euclidean" in baseline["method"]
    f1, threshold = best_f1_from_pngs(root)
    assert baseline["best_f1"] == pytest.approx(f1, abs=1e-9)
    assert baseline["threshold"] == pytest.approx(threshold, abs=1e-9)
    assert baseline["best_f1"] <= 0.5


@pytest.mark.parametrize("seed", [1, 2])
def test_pixel_differencing_is_not_enough(seed: int, tmp_path: Path) -> None:
    config = SynthConfig(seed=seed, size=64, train=1, val=1, test=60)
    manifest = synth.generate_synthetic(tmp_path / "s", config, workers=1)
    f1, _ = best_f1_from_pngs(tmp_path / "s")
    assert manifest["pixel_difference_baseline"]["best_f1"] == pytest.approx(f1, abs=1e-9)
    assert f1 <= 0.5


def test_dates_differ_in_unchanged_areas_and_more_in_changed_ones(
    small: tuple[Path, dict[str, Any]],
) -> None:
    root, _ = small
    changed_norms, unchanged_norms = [], []
    for a, b, label in read_split(root, "train") + read_split(root, "test"):
        norm = difference_norm(a, b)
        changed_norms.append(norm[label == 255])
        unchanged_norms.append(norm[label == 0])
    changed = np.concatenate(changed_norms)
    unchanged = np.concatenate(unchanged_norms)
    # Nuisance: almost every unchanged pixel differs, by much more than sensor noise alone.
    assert (unchanged > 0).mean() > 0.95
    assert unchanged.mean() > 15
    # Signal: changed pixels differ more on average.
    assert changed.mean() > unchanged.mean() + 10


def test_label_marks_changed_footprints_not_shadows() -> None:
    size = 128
    scene = synth.make_scene(synth.pair_rng(0, "train", 0), size)
    label = synth._change_map(scene)
    sx, sy = synth.SHADOW_DIRECTION
    checked = 0
    for building in scene.buildings:
        cx, cy = building.centre
        corners = building.corners
        radius = np.hypot(*(corners[0] - corners[2])) / 2
        # Just past the footprint on the shadow side: never another object (placement keeps
        # 2 px clear), so never labelled, even for a new building whose shadow is new.
        x, y = round(cx + (radius + 1.5) * sx), round(cy + (radius + 1.5) * sy)
        if 0 <= x < size and 0 <= y < size and 0 <= round(cx) < size and 0 <= round(cy) < size:
            assert label[round(cy), round(cx)] == (building.in_a != building.in_b)
            assert not label[y, x]
            checked += 1
    assert checked >= 5
    assert any(b.in_a != b.in_b for b in scene.buildings)


def test_preview_writes_rows_of_pairs(tmp_path: Path) -> None:
    synth.preview(tmp_path / "p.png", seed=0, size=64, count=2)
    image = np.asarray(Image.open(tmp_path / "p.png"))
    assert image.shape == (2 * 64 + 4, 4 * 64 + 3 * 4, 3)


def test_cli_synth_uses_params_and_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    write_repo_params(params, synth={"seed": 3, "size": 64, "train": 3, "val": 2, "test": 4})
    out = tmp_path / "out"
    assert main(["--params", str(params), "synth", "--out", str(out), "--seed", "5"]) == 0
    manifest = read_manifest(out)
    assert manifest["seed"] == 5
    assert {s: manifest["splits"][s]["pairs"] for s in SPLITS} == {"train": 3, "val": 2, "test": 4}
    printed = capsys.readouterr().out
    assert '{"train": 3, "val": 2, "test": 4}' in printed
    assert f"{100 * manifest['pixel_difference_baseline']['best_f1']:.1f} %" in printed


def test_cli_synth_rejects_a_negative_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    write_repo_params(tmp_path / "none.yaml")  # the repository's settings
    assert (
        main(["--params", str(tmp_path / "none.yaml"), "synth", "--out", str(out), "--seed", "-1"])
        == 1
    )
    assert "synth.seed: expected a non-negative integer, got -1" in capsys.readouterr().err
    assert not out.exists()


# --- never replace what synth did not create; no worker outlives a killed synth -------------


def _tree(path: Path) -> dict[str, bytes | None]:
    """Every entry under `path` (relative name -> file bytes, None for a folder)."""
    return {
        str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(path.rglob("*"))
    }


TINY = SynthConfig(seed=0, size=64, train=2, val=1, test=1)


def test_a_folder_synth_did_not_create_is_refused_and_kept(tmp_path: Path) -> None:
    """`--out data/prepared` (not `.../synthetic`) must not delete the datasets in it."""
    out = tmp_path / "prepared"
    (out / "levir-cd").mkdir(parents=True)
    (out / "levir-cd" / "manifest.json").write_text('{"dataset": "levir-cd"}')
    (out / "levir-cd" / "notes.txt").write_text("mine")
    before = _tree(out)
    with pytest.raises(DataError) as info:
        synth.generate_synthetic(out, TINY, workers=1)
    assert str(info.value) == (
        f"{out}: is a folder with no readable manifest.json, so not a prepared dataset; "
        f"`cdbench synth` replaces its output folder as a whole, so it will not write there: "
        f"pass --out a new or empty folder, or delete {out} yourself"
    )
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # no scratch left


def test_another_dataset_is_refused_and_a_synthetic_one_replaced(tmp_path: Path) -> None:
    other = tmp_path / "cdd"
    other.mkdir()
    (other / "manifest.json").write_text('{"dataset": "cdd"}')
    with pytest.raises(DataError, match="holds the prepared 'cdd' dataset"):
        synth.generate_synthetic(other, TINY, workers=1)
    assert _tree(other) == {"manifest.json": b'{"dataset": "cdd"}'}

    ours = tmp_path / "synthetic"
    synth.generate_synthetic(ours, TINY, workers=1)
    again = synth.generate_synthetic(ours, dataclasses.replace(TINY, seed=1), workers=1)
    assert read_manifest(ours) == json.loads(json.dumps(again))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdd", "synthetic"]


def test_synth_out_dot_is_refused_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cdbench synth --out .` crashed with EBUSY, leaving `..partial-<pid>` behind."""
    params = tmp_path / "params.yaml"
    write_repo_params(params, synth={"seed": 0, "size": 64, "train": 2, "val": 1, "test": 1})
    here = tmp_path / "work"
    here.mkdir()
    (here / "notes.txt").write_text("mine")
    monkeypatch.chdir(here)
    assert main(["--params", str(params), "synth", "--out", "."]) == 1
    assert capsys.readouterr().err == (
        f"cdbench synth: error: .: is the current folder ({here.resolve()}) or holds it; "
        f"`cdbench synth` replaces its output folder as a whole, so it will not write there: "
        f"pass --out a new or empty folder, e.g. --out synthetic\n"
    )
    assert _tree(here) == {"notes.txt": b"mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "work"]
    # Even empty, the current folder is not replaced (the shell would be left in a deleted one).
    (here / "notes.txt").unlink()
    assert main(["--params", str(params), "synth", "--out", "."]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "work"]
    assert not any(here.iterdir())


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
def test_killed_synth_leaves_no_worker_and_the_next_run_cleans_up(tmp_path: Path) -> None:
    """SIGKILL of `cdbench synth` (2 workers): its workers end too (they stayed alive, ~300 MB
    each, under PID 1); the next run deletes the staging folder it left and succeeds."""
    params = tmp_path / "params.yaml"
    write_repo_params(params, synth={"seed": 0, "size": 256, "train": 400, "val": 1, "test": 1})
    out = tmp_path / "synthetic"
    command = [sys.executable, "-m", "benchmark", "--params", str(params), "synth"]
    process = subprocess.Popen(
        [*command, "--out", str(out)],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    workers: list[int] = []
    try:
        wait_for(
            lambda: process.poll() is not None or any(tmp_path.glob(".synthetic.partial-*/*/A/*")),
            "the first pair in the staging folder",
        )
        assert process.poll() is None, "synth ended before it could be killed"
        workers = children(process.pid)  # taken before the kill: orphans get another parent
        assert len(workers) == 2
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
        wait_for(lambda: all(ended(pid) for pid in workers), f"workers {workers} to end")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
        for pid in workers:
            if not ended(pid):
                os.kill(pid, signal.SIGKILL)  # a failed test leaves no process behind
    assert not out.exists()
    assert (tmp_path / f".synthetic.partial-{process.pid}").is_dir()
    synth.generate_synthetic(out, TINY, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "synthetic"]
