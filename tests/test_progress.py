"""Progress bars (benchmark/progress.py) and the quiet library logging of `cdbench`; the bars
of validation inside training and of `cdbench weights` downloads."""

from __future__ import annotations

import hashlib
import io
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn
from tqdm import tqdm

from benchmark import progress
from benchmark.cli import main
from benchmark.config import load_params
from benchmark.data.synth import generate_synthetic
from benchmark.errors import DownloadError
from benchmark.evaluation.predict import new_split_scores, score_split
from benchmark.losses.contrastive import ContrastiveLoss
from benchmark.models.output import ChangeOutput
from benchmark.models.weights import WeightFile
from benchmark.models.weights_fetch import fetch_weights
from benchmark.progress import LINE_STEPS, configure_output, progress_bar
from benchmark.training.loop import train_run
from tests.conftest import synth_config, write_repo_params
from tests.data.tiny import TINY
from tests.httpserver import LocalServer, Route


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


def test_non_terminal_transient_bar_prints_only_its_last_line() -> None:
    stream = io.StringIO()
    for _ in progress_bar(
        range(48), desc="validate run val", unit="pair", leave=False, file=stream
    ):
        pass
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and "\r" not in stream.getvalue()
    assert lines[0].startswith("validate run val: 48/48 pair (100%), ")
    assert "pair/s" in lines[0] and "elapsed" in lines[0]


# --- validation inside training ---------------------------------------------------------------


class Difference(nn.Module):
    """A stand-in model: the mean absolute difference of the dates as a distance."""

    def forward(self, t0: torch.Tensor, t1: torch.Tensor) -> ChangeOutput:
        return ChangeOutput(score=(t0 - t1).abs().mean(1, keepdim=True), score_kind="distance")


def test_score_split_bar_counts_pairs_and_changes_no_score() -> None:
    generator = torch.Generator().manual_seed(0)
    batches = [
        {
            "image": torch.rand(size, 2, 3, 8, 8, generator=generator),
            "mask": (torch.rand(size, 1, 8, 8, generator=generator) > 0.7).long(),
            "name": [f"p{size}-{i}" for i in range(size)],
        }
        for size in (3, 3, 1)
    ]
    device = torch.device("cpu")
    plain = new_split_scores("distance", [1.0], device)
    score_split(Difference(), ContrastiveLoss(), batches, plain, device)
    counted = new_split_scores("distance", [1.0], device)
    stream = io.StringIO()
    with progress_bar(desc="validate run val", total=7, unit="pair", file=stream) as bar:
        score_split(Difference(), ContrastiveLoss(), batches, counted, device, progress=bar)
        assert bar.n == 7
    counts = [int(line.split(": ")[1].split("/")[0]) for line in stream.getvalue().splitlines()]
    assert counts == [0, 3, 6, 7]  # advanced batch by batch, by each batch's pairs
    for a, b in zip(plain.tensors(), counted.tensors(), strict=True):
        assert torch.equal(a, b)


TINY_RUN = {
    **TINY,
    "synth": {"seed": 0, "size": 64, "train": 8, "val": 3, "test": 2},
    "runtime": {**TINY["runtime"], "progress": True},
    "recipes": {
        "tiny": {
            **TINY["recipes"]["tiny"],
            "batch_size": 2,
            "iterations": 2,
            "val_every": 1,
            "augment": "none",
        }
    },
}
"""The tiny run of tests/data/tiny.py, two steps validating after each, with progress bars."""


@pytest.mark.slow
def test_validation_in_training_prints_one_plain_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two steps validating after each on a 3-pair val split: stderr (not a terminal) holds
    the training bar's lines and one complete `validate` line per validation."""
    generate_synthetic(
        tmp_path / "prepared" / "synthetic", synth_config(size=64, train=8, val=3, test=2)
    )
    folders = {"raw_dir": str(tmp_path / "raw"), "prepared_dir": str(tmp_path / "prepared")}
    params = load_params(
        write_repo_params(tmp_path / "params.yaml", **{**TINY_RUN, "data": folders})
    )
    (spec,) = params.runs()
    capsys.readouterr()
    train_run(params, spec, tmp_path / "checkpoints", tracking=False)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    validations = [line for line in lines if line.startswith("validate ")]
    assert len(validations) == 2
    for line in validations:
        assert line.startswith(f"validate {spec.name} val: 3/3 pair (100%), ")
        assert "pair/s" in line and "elapsed" in line
    assert any(line.startswith(f"{spec.name}: 2/2 step (100%)") for line in lines)


# --- `cdbench weights` downloads --------------------------------------------------------------


def served_weights(server: LocalServer, data: bytes, body: bytes) -> WeightFile:
    """Serve `body` under a torchvision-style name carrying the SHA-256 prefix of `data`."""
    path = f"/models/resnet50-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    server.add(path, Route(body=body))
    return WeightFile(url=server.url(path), source="test resnet50")


def test_weights_download_prints_byte_lines_and_checks_the_hash(
    server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, other = random.Random(1).randbytes(300_000), random.Random(2).randbytes(300_000)
    good = served_weights(server, data, data)
    (fetched,) = fetch_weights(tmp_path / "weights", [good], progress=True)
    assert fetched.downloaded and fetched.path.read_bytes() == data
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"download {good.name}: ")]
    assert 2 <= len(lines) <= LINE_STEPS + 2
    assert lines[-1].startswith(f"download {good.name}: 293kB/293kB (100%), ")
    assert "ETA" in lines[-1]

    bad = served_weights(server, other, data)  # the name promises another file
    with pytest.raises(DownloadError, match=f"does not start with {bad.sha256_prefix}"):
        fetch_weights(tmp_path / "bad", [bad], progress=True)
    assert "\r" not in capsys.readouterr().err
    assert list((tmp_path / "bad").iterdir()) == []
