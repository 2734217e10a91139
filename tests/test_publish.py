"""Publishing outputs whole (benchmark/publish.py), and `cdbench evaluate` publishing its four
outputs as one set: interrupted anywhere, a reader finds the previous set or the new one, and
the only partial state is a set without its metrics file."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmark import publish
from benchmark.errors import CdbenchError
from benchmark.publish import StagedOutputs, staging_dir

DEAD_PID = 2**22 + 1  # above Linux's largest pid_max: no such process


class Killed(BaseException):
    """Stands for a kill landing at that point (BaseException: nothing may catch it)."""


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under `root` (relative name -> file bytes, None for a folder)."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def targets(root: Path) -> dict[str, Path]:
    """A set shaped like `cdbench evaluate`'s: files in three folders, a folder, `metrics` last."""
    return {
        "curves": root / "curves" / "run.json",
        "per_image": root / "per_image" / "run.csv",
        "predictions": root / "predictions" / "run",
        "metrics": root / "metrics" / "run.json",
    }


def write_set(paths: dict[str, Path], version: str) -> None:
    """Write a whole set (directly, or into staged paths), each file saying its `version`."""
    for key, path in paths.items():
        if key == "predictions":
            path.mkdir(parents=True, exist_ok=True)
            (path / f"{version}-0.png").write_text(version)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{key} {version}")


def state_of(paths: dict[str, Path]) -> dict[str, str]:
    """Which version each target holds now: 'old', 'new' or 'absent'."""
    found = {}
    for key, path in paths.items():
        if not path.exists():
            found[key] = "absent"
        elif path.is_dir():
            (version,) = {p.read_text() for p in path.iterdir()}
            found[key] = version
        else:
            found[key] = path.read_text().split()[-1]
    return found


@pytest.fixture
def old_set(tmp_path: Path) -> Iterator[dict[str, Path]]:
    paths = targets(tmp_path / "reports")
    write_set(paths, "old")
    (paths["predictions"] / "old-1.png").write_text("old")  # the new set has fewer pictures
    yield paths


def test_the_new_set_replaces_the_old_one_whole(old_set: dict[str, Path], tmp_path: Path) -> None:
    with StagedOutputs(old_set, last="metrics", label="evaluate-run") as staged:
        write_set({key: staged.path(key) for key in old_set}, "new")
        assert state_of(old_set) == dict.fromkeys(old_set, "old")  # nothing visible yet
        staged.publish()
    assert state_of(old_set) == dict.fromkeys(old_set, "new")
    assert sorted(p.name for p in old_set["predictions"].iterdir()) == ["new-0.png"]
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        "curves",
        "metrics",
        "per_image",
        "predictions",
    ]


def test_a_first_set_is_published_where_nothing_was(tmp_path: Path) -> None:
    paths = targets(tmp_path / "reports")
    with StagedOutputs(paths, last="metrics", label="evaluate-run") as staged:
        write_set({key: staged.path(key) for key in paths}, "new")
        staged.publish()
    assert state_of(paths) == dict.fromkeys(paths, "new")


def test_an_error_before_publishing_keeps_the_old_set(
    old_set: dict[str, Path], tmp_path: Path
) -> None:
    before = snapshot(tmp_path)
    with pytest.raises(Killed), StagedOutputs(old_set, "metrics", "evaluate-run") as staged:
        write_set({key: staged.path(key) for key in ("metrics", "curves")}, "new")
        raise Killed  # e.g. the picture writer failed
    assert snapshot(tmp_path) == before  # staging folder removed too


def test_a_missing_output_is_refused_before_anything_moves(
    old_set: dict[str, Path], tmp_path: Path
) -> None:
    before = snapshot(tmp_path)
    with StagedOutputs(old_set, "metrics", "evaluate-run") as staged:
        write_set({key: staged.path(key) for key in ("metrics", "curves")}, "new")
        missing = r"nothing was staged for \['per_image', 'predictions'\]"
        with pytest.raises(ValueError, match=missing):
            staged.publish()
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("at", [1, 2, 3, 4])
def test_killed_between_renames_the_only_partial_state_lacks_the_last_file(
    old_set: dict[str, Path], monkeypatch: pytest.MonkeyPatch, at: int
) -> None:
    """A kill before the `at`-th rename into place: `metrics` is gone and each other output is
    wholly old, wholly new or absent; never the old metrics beside new outputs."""
    real_replace = os.replace
    calls: list[str] = []

    def replace(source: str | Path, target: str | Path) -> None:
        calls.append(str(target))
        if len(calls) == at:
            raise Killed
        real_replace(source, target)

    monkeypatch.setattr(publish.os, "replace", replace)
    with pytest.raises(Killed), StagedOutputs(old_set, "metrics", "evaluate-run") as staged:
        write_set({key: staged.path(key) for key in old_set}, "new")
        staged.publish()
    expected = {  # curves, per_image, predictions (a folder: moved aside, then replaced)
        1: ("old", "old", "old"),
        2: ("new", "old", "old"),
        3: ("new", "new", "absent"),
        4: ("new", "new", "new"),
    }[at]
    found = state_of(old_set)
    assert found.pop("metrics") == "absent"
    assert found == dict(zip(["curves", "per_image", "predictions"], expected, strict=True))


def test_ctrl_c_and_sigterm_during_the_renames_wait_for_the_whole_set(
    old_set: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signals arrive at the first rename; they take effect once the set is in place."""
    real_replace = os.replace

    def replace(source: str | Path, target: str | Path) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        real_replace(source, target)

    class Terminated(Exception):
        pass

    def on_sigterm(number: int, frame: object) -> None:
        raise Terminated

    interrupt = signal.getsignal(signal.SIGINT)  # SIG_IGN in a shell's background job
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        monkeypatch.setattr(publish.os, "replace", replace)
        with (
            pytest.raises((Terminated, KeyboardInterrupt)),
            StagedOutputs(old_set, "metrics", "evaluate-run") as staged,
        ):
            write_set({key: staged.path(key) for key in old_set}, "new")
            staged.publish()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert state_of(old_set) == dict.fromkeys(old_set, "new")
    assert signal.getsignal(signal.SIGINT) is interrupt  # restored as it was


def test_a_killed_runs_staging_is_removed_by_the_next_run_a_live_ones_kept(
    old_set: dict[str, Path], tmp_path: Path
) -> None:
    reports = tmp_path / "reports"
    dead = reports / f".evaluate-run.partial-{DEAD_PID}"
    live = reports / f".evaluate-run.partial-{os.getppid()}"  # pytest's parent: alive
    other = reports / f".evaluate-other.partial-{DEAD_PID}"  # another run's: not ours
    for folder in (dead, live, other):
        (folder / "metrics").mkdir(parents=True)
    with StagedOutputs(old_set, "metrics", "evaluate-run") as staged:
        write_set({key: staged.path(key) for key in old_set}, "new")
        staged.publish()
    assert not dead.exists() and live.is_dir() and other.is_dir()


def test_a_target_on_another_file_system_is_refused_before_anything_moves(
    old_set: dict[str, Path], tmp_path: Path
) -> None:
    elsewhere = Path("/dev/shm")
    if not elsewhere.is_dir() or elsewhere.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another file system than the temporary folder")
    away = Path(os.path.realpath(elsewhere)) / f"cdbench-test-{os.getpid()}"
    away.mkdir()
    try:
        link = tmp_path / "reports" / "per_image"
        (away / "run.csv").write_text((link / "run.csv").read_text())
        (link / "run.csv").unlink()
        link.rmdir()
        link.symlink_to(away)
        before = snapshot(tmp_path)
        with StagedOutputs(old_set, "metrics", "evaluate-run") as staged:
            write_set({key: staged.path(key) for key in old_set}, "new")
            with pytest.raises(CdbenchError, match="on another file system"):
                staged.publish()
        assert snapshot(tmp_path) == before
        assert (away / "run.csv").read_text() == "per_image old"
    finally:
        for path in away.iterdir():
            path.unlink()
        away.rmdir()


def test_staging_dir_puts_the_old_folder_back_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "synthetic"
    out.mkdir()
    (out / "manifest.json").write_text("old")
    real_rename = Path.rename

    def rename(self: Path, target: str | Path) -> Path:
        if Path(target) == out and ".partial-" in self.name:
            raise OSError(16, "Device or resource busy")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError), staging_dir(out) as stage:
        (stage / "manifest.json").write_text("new")
    assert snapshot(tmp_path) == {"synthetic": None, "synthetic/manifest.json": b"old"}


def test_staging_dir_of_a_relative_path_stages_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`x/..`-style names are made absolute first: staging is `.<name>.partial-<pid>` beside
    the real folder (`--out .` once made `..partial-<pid>` and tried to rename `.`)."""
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    with staging_dir(Path("../synthetic/sub/..")) as stage:
        assert stage.parent == tmp_path and stage.name.startswith(".synthetic.partial-")
        (stage / "manifest.json").write_text(json.dumps({"dataset": "synthetic"}))
    assert snapshot(tmp_path) == {
        "synthetic": None,
        "synthetic/manifest.json": b'{"dataset": "synthetic"}',
        "work": None,
    }


# --- `cdbench evaluate` publishes its four outputs as one set ------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny trained run (no MLflow): (params.yaml, checkpoints folder)."""
    from benchmark.config import load_params
    from benchmark.data.synth import generate_synthetic
    from benchmark.training.loop import train_run
    from tests.conftest import synth_config
    from tests.data.tiny import RUN, write_params

    root = tmp_path_factory.mktemp("trained")
    generate_synthetic(
        root / "prepared" / "synthetic", synth_config(size=64, train=16, val=4, test=4)
    )
    params_path = write_params(root, root / "prepared")
    params = load_params(params_path)
    (spec,) = params.runs()
    train_run(params, spec, root / "checkpoints" / RUN, tracking=False)
    return params_path, root / "checkpoints"


def evaluate(trained: tuple[Path, Path], reports: Path) -> int:
    from benchmark.cli import main
    from tests.data.tiny import RUN

    params_path, checkpoints = trained
    command = ["--params", str(params_path), "evaluate", RUN, "--checkpoints", str(checkpoints)]
    return main([*command, "--reports", str(reports), "--no-tracking"])


def evaluation_outputs(reports: Path) -> dict[str, bytes | None]:
    """The evaluation set as a reader finds it (hidden entries, such as a lock, left out)."""
    return {name: v for name, v in snapshot(reports).items() if not name.startswith(".")}


@pytest.mark.slow
def test_evaluate_killed_while_writing_keeps_the_previous_set(
    trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after its metrics were written, `evaluate` left them (and the curves and
    per-image counts) beside the previous model's prediction maps, unmarked."""
    from benchmark.evaluation import evaluate as evaluate_module
    from tests.data.tiny import RUN

    reports = tmp_path / "reports"
    assert evaluate(trained, reports) == 0
    # Mark the previous set, so that any file the next run rewrites shows.
    for path in reports.glob("[!.]*/**/*"):
        if path.is_file():
            path.write_bytes(path.read_bytes() + b"\nprevious set")
    before = evaluation_outputs(reports)
    assert sorted(before) == [
        "curves",
        f"curves/{RUN}.json",
        "metrics",
        f"metrics/{RUN}.json",
        "per_image",
        f"per_image/{RUN}.csv",
        "pr",
        f"pr/{RUN}.csv",
        "predictions",
        f"predictions/{RUN}.npz",
        "runs",
        f"runs/{RUN}.json",
        "selection",
        f"selection/{RUN}.csv",
        "training",
        f"training/{RUN}.csv",
    ]

    def killed(*args: object, **kwargs: object) -> list[Path]:
        raise Killed

    monkeypatch.setattr(evaluate_module, "_write_thumbnails", killed)
    with pytest.raises(Killed):
        evaluate(trained, reports)
    assert evaluation_outputs(reports) == before
    monkeypatch.undo()

    # Killed between two renames of the publication: no metrics file, so not evaluated.
    real_replace = os.replace
    calls: list[str] = []

    def replace(source: str | Path, target: str | Path) -> None:
        calls.append(str(target))
        if len(calls) == 2:
            raise Killed
        real_replace(source, target)

    monkeypatch.setattr(publish.os, "replace", replace)
    with pytest.raises(Killed):
        evaluate(trained, reports)
    assert not (reports / "metrics" / f"{RUN}.json").exists()
    monkeypatch.undo()

    # The next run publishes a whole new set, with no trace of the previous one.
    assert evaluate(trained, reports) == 0
    after = evaluation_outputs(reports)
    assert sorted(after) == sorted(before)
    assert not any(content and content.endswith(b"previous set") for content in after.values())
    metrics = json.loads((reports / "runs" / f"{RUN}.json").read_text())
    assert metrics["run"] == RUN
    assert not list(reports.glob(".evaluate-*"))  # no staging folder left
