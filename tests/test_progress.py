"""Progress bars (benchmark/progress.py) and the quiet library logging of `cdbench`."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from tqdm import tqdm

from benchmark import progress
from benchmark.cli import main
from benchmark.progress import LINE_STEPS, configure_output, progress_bar


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo configure_output: quiet mode, the MLflow variables and the loggers' levels."""
    for name in ("MLFLOW_LOGGING_LEVEL", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"):
        monkeypatch.delenv(name, raising=False)
    levels = {name: logging.getLogger(name).level for name in ("mlflow", "urllib3", "")}
    handlers = list(logging.getLogger().handlers)
    yield
    progress._quiet = False
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger().handlers = handlers  # --verbose adds a root handler


@pytest.mark.parametrize("items", [1, 7, 48, 1000])
def test_non_terminal_prints_bounded_plain_lines(items: int) -> None:
    stream = io.StringIO()
    for _ in progress_bar(range(items), desc="evaluate run test", unit="pair", file=stream):
        pass
    text = stream.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and "\x1b" not in text
    assert 2 <= len(lines) <= LINE_STEPS + 2
    assert all(line.startswith("evaluate run test: ") for line in lines)
    assert lines[0] == f"evaluate run test: 0/{items} pair (0%)"
    assert lines[-1].startswith(f"evaluate run test: {items}/{items} pair (100%), ")
    assert "pair/s" in lines[-1] and "ETA" in lines[-1]
    counts = [int(line.split(": ")[1].split("/")[0]) for line in lines]
    assert counts == sorted(set(counts)), "each line reports new progress"


def test_non_terminal_manual_updates_bytes_and_unknown_total() -> None:
    stream = io.StringIO()
    with progress_bar(desc="download a.zip", unit="B", unit_scale=True, file=stream) as bar:
        for _ in range(50):
            bar.update(1 << 20)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert len(lines) <= 3  # no total: a first line, time-based lines only, a last line
    assert lines[-1].startswith("download a.zip: 50.0MB, ")


def test_non_terminal_messages_between_lines_stay_whole() -> None:
    stream = io.StringIO()
    with progress_bar(desc="prepare", total=20, unit="file", file=stream) as bar:
        for index in range(20):
            if index == 10:
                tqdm.write("a message", file=stream)
            bar.update()
    text = stream.getvalue()
    assert "\r" not in text
    assert "a message\n" in text.splitlines(keepends=True)
    assert text.splitlines()[-1].startswith("prepare: 20/20 file (100%)")


def test_postfix_is_shown_in_lines() -> None:
    stream = io.StringIO()
    with progress_bar(desc="train", total=10, unit="step", file=stream) as bar:
        for _ in range(10):
            bar.set_postfix(loss="0.5")
            bar.update()
    assert stream.getvalue().splitlines()[-1].endswith("loss=0.5")


def test_terminal_gets_a_redrawn_bar() -> None:
    stream = Terminal()
    for _ in progress_bar(range(30), desc="synth", unit="pair", file=stream):
        pass
    text = stream.getvalue()
    assert "\r" in text
    assert "synth: 100%" in text and "30/30" in text


@pytest.mark.parametrize("stream", [io.StringIO(), Terminal()], ids=["lines", "terminal"])
def test_quiet_and_disabled_print_nothing(stream: io.StringIO) -> None:
    for _ in progress_bar(range(10), desc="off", file=stream, enabled=False):
        pass
    configure_output(quiet=True)
    with progress_bar(desc="quiet", total=10, file=stream) as bar:
        bar.update(10)
    assert stream.getvalue() == ""


def test_mlflow_info_hidden_unless_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    import mlflow  # noqa: F401  (its import installs its own stderr handler)

    logger = logging.getLogger("mlflow.store.db.utils")
    configure_output()
    logger.info("Creating initial MLflow database tables...")
    logger.warning("a warning")
    err = capsys.readouterr().err
    assert "Creating initial" not in err and "a warning" in err
    configure_output(verbose=True)
    logger.info("Creating initial MLflow database tables...")
    assert "INFO mlflow.store.db.utils: Creating initial" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_prints_no_mlflow_info_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cdbench runs` on a fresh store: MLflow logs the store's creation at INFO."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    assert main(["runs"]) == 0
    out, err = capsys.readouterr()
    assert "MLflow tracking URI" in out
    assert "INFO" not in err and "INFO" not in out
