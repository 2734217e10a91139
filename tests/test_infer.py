"""`cdbench predict` (benchmark/infer.py): a trained run's change map for a pair of
any size, at the run's validation-chosen threshold, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmark.cli import main
from benchmark.config import load_params
from benchmark.infer import PAD_MULTIPLE, choose_threshold, padded_side, windows
from benchmark.training.loop import train_run
from tests.data.tiny import RUN, write_params


@pytest.mark.parametrize(("size", "tile", "margin"), [(50, 64, 16), (64, 64, 16), (150, 64, 16)])
def test_windows_keep_every_pixel_once_inside_their_window(
    size: int, tile: int, margin: int
) -> None:
    found = windows(size, tile, margin)
    covered = np.zeros(size, int)
    for start, kept_from, kept_to in found:
        assert start >= 0 and start + min(tile, size) <= size
        assert start <= kept_from < kept_to <= start + tile
        if kept_from > 0:  # an inner edge keeps `margin` pixels of context before it
            assert kept_from - start >= margin
        if kept_to < size:
            assert start + tile - kept_to >= margin
        covered[kept_from:kept_to] += 1
    assert (covered == 1).all()
    assert (len(found) == 1) == (size <= tile)
    assert padded_side(size) % PAD_MULTIPLE == 0 and 0 <= padded_side(size) - size < 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with params.yaml, the tiny synthetic data and the tiny run's checkpoints."""
    from benchmark.data.synth import generate_synthetic
    from tests.conftest import synth_config

    folder = tmp_path_factory.mktemp("predict")
    generate_synthetic(
        folder / "prepared" / "synthetic", synth_config(size=64, train=16, val=4, test=4)
    )
    params = load_params(write_params(folder, folder / "prepared"))
    (spec,) = params.runs()
    train_run(params, spec, folder / "checkpoints" / RUN, tracking=False)
    return folder


def _pair(folder: Path, width: int, height: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    paths = folder / f"a-{width}x{height}.png", folder / f"b-{width}x{height}.png"
    for path in paths:
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return paths


def _predict(folder: Path, *args: str) -> int:
    return main(
        [
            "--params", str(folder / "params.yaml"), "predict", RUN, *args,
            "--checkpoints", str(folder / "checkpoints"), "--reports", str(folder / "reports"),
        ]
    )  # fmt: skip


@pytest.mark.slow
def test_predict_writes_maps_of_the_input_size_at_the_training_threshold(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _pair(tmp_path, 100, 70)  # neither side a multiple of 32
    out = tmp_path / "maps" / "change.png"
    assert _predict(trained, str(a), str(b), "--out", str(out)) == 0
    printed = capsys.readouterr().out
    change = np.asarray(Image.open(out))
    score = np.load(tmp_path / "maps" / "change-score.npy")
    assert change.shape == score.shape == (70, 100)
    assert score.dtype == np.float32 and set(np.unique(change)) <= {0, 255}
    assert "from training" in printed and "summary.json" in printed  # no metrics file yet
    threshold = float(printed.split("> ")[1].split(",")[0])
    assert ((score > threshold) == (change == 255)).all()

    # Tiled in 64-pixel windows: every pixel still scored, the same threshold applied.
    tiled = tmp_path / "tiled.png"
    score_png = tmp_path / "tiled-score.png"
    args = ["--out", str(tiled), "--out-score", str(score_png), "--tile", "64", "--margin", "8"]
    assert _predict(trained, str(a), str(b), *args) == 0
    assert "4 windows of 64 x 64" in capsys.readouterr().out
    assert (
        np.asarray(Image.open(tiled)).shape
        == np.asarray(Image.open(score_png)).shape
        == (
            70,
            100,
        )
    )

    # A given threshold wins.
    assert _predict(trained, str(a), str(b), "--out", str(out), "--threshold", "0.25") == 0
    assert "given (--threshold)" in capsys.readouterr().out
    assert (
        (np.load(tmp_path / "maps" / "change-score.npy") > 0.25)
        == (np.asarray(Image.open(out)) == 255)
    ).all()


@pytest.mark.slow
def test_predict_uses_the_evaluated_val_threshold(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmark.reporting.results import verified_metrics

    base = ["--params", str(trained / "params.yaml")]
    where = ["--checkpoints", str(trained / "checkpoints"), "--reports", str(trained / "reports")]
    assert main([*base, "evaluate", RUN, *where, "--no-tracking"]) == 0
    metrics = verified_metrics(trained / "reports" / "metrics" / f"{RUN}.json")
    a, b = _pair(tmp_path, 64, 64)
    capsys.readouterr()
    assert _predict(trained, str(a), str(b), "--out", str(tmp_path / "c.png")) == 0
    printed = capsys.readouterr().out
    assert f"> {metrics['val_threshold/threshold']:g}, the validation-chosen" in printed


@pytest.mark.slow
def test_predict_errors_name_the_problem_and_the_fix(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = _pair(tmp_path, 64, 48)
    _, b = _pair(tmp_path, 64, 64)
    assert _predict(trained, str(a), str(b)) == 1
    error = capsys.readouterr().err
    assert "64 x 48" in error and "64 x 64" in error and "same size" in error

    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    assert _predict(trained, str(broken), str(b)) == 1
    error = capsys.readouterr().err
    assert str(broken) in error and "cannot be read as an image" in error

    assert _predict(trained, str(tmp_path / "absent.png"), str(b)) == 1
    assert "absent.png: not found" in capsys.readouterr().err

    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    args = ["--params", str(trained / "params.yaml"), "predict", RUN, str(b), str(b)]
    assert main([*args, "--checkpoints", str(empty)]) == 1
    assert f"dvc repro train@{RUN}" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_with_weights_writes_the_run_folders_change_map(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from benchmark.models.released import sha256_of

    a, b = _pair(tmp_path, 96, 64, seed=1)
    best = trained / "checkpoints" / RUN / "best.pt"
    elsewhere = tmp_path / "elsewhere" / "tiny.pt"  # the same file, away from the run's folder
    elsewhere.parent.mkdir()
    shutil.copy(best, elsewhere)
    capsys.readouterr()
    from_run, from_file = tmp_path / "run.png", tmp_path / "file.png"
    assert _predict(trained, str(a), str(b), "--out", str(from_run)) == 0
    printed = capsys.readouterr().out
    assert f"weights {best} (trained run, step " in printed
    summary = json.loads((best.parent / "summary.json").read_text())
    chosen = choose_threshold(RUN, best, summary, trained / "reports")  # the one used above
    assert f"> {chosen.value:g}, {chosen.source}" in printed
    threshold = repr(chosen.value)

    # The run's folder is not read: --checkpoints points at an empty one.
    empty = tmp_path / "no-checkpoints"
    empty.mkdir()
    argv = ["--params", str(trained / "params.yaml"), "predict", RUN, str(a), str(b)]
    where = ["--checkpoints", str(empty), "--reports", str(trained / "reports")]
    weights = ["--weights", str(elsewhere), "--out", str(from_file)]
    assert main([*argv, *where, *weights, "--threshold", threshold]) == 0
    printed = capsys.readouterr().out
    assert f"weights {elsewhere} (cdbench checkpoint" in printed
    assert f"sha256 {sha256_of(elsewhere)}" in printed
    assert (np.asarray(Image.open(from_file)) == np.asarray(Image.open(from_run))).all()
    assert (np.load(tmp_path / "file-score.npy") == np.load(tmp_path / "run-score.npy")).all()

    # No --threshold and no `evaluate --weights` of this file: the recipe's fixed threshold.
    assert main([*argv, *where, *weights]) == 0
    printed = capsys.readouterr().out
    fixed = load_params(trained / "params.yaml").recipes["tiny"].thresholds.probability
    assert f"> {fixed:g}, the recipe's fixed threshold" in printed
    assert (
        (np.load(tmp_path / "file-score.npy") > fixed) == (np.asarray(Image.open(from_file)) == 255)
    ).all()


def test_predict_weights_errors_name_the_file_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no data/released/ here
    params = write_params(tmp_path, tmp_path / "prepared")
    a, b = _pair(tmp_path, 32, 32)
    argv = ["--params", str(params), "predict", RUN, str(a), str(b), "--out", "c.png"]

    missing = tmp_path / "absent.pt"
    assert main([*argv, "--weights", str(missing)]) == 1
    error = capsys.readouterr().err
    assert f"{missing}: no such checkpoint file" in error and "--released" in error

    assert main([*argv, "--released"]) == 1
    error = capsys.readouterr().err
    assert "data/released/bsfnet-cdd-best.pth: no released bsfnet checkpoint there" in error
    assert not (tmp_path / "c.png").exists()

    with pytest.raises(SystemExit) as refused:
        main([*argv, "--weights", str(missing), "--released"])
    assert refused.value.code == 2
    assert "--released: not allowed with argument --weights" in capsys.readouterr().err
