"""The command line itself (benchmark/cli.py): --version, every subcommand's description, the
experiments listed in --help with or without params.yaml, and `check` choosing its profile."""

from __future__ import annotations

import argparse
from importlib.metadata import version
from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli import build_parser, main
from benchmark.reporting.check import default_profile
from benchmark.reporting.references import load_references
from tests.conftest import write_repo_params

REPO = Path(__file__).resolve().parents[1]


def _help(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 0
    return "".join(capsys.readouterr().out.split())  # argparse wraps lines, even at hyphens


def test_version_comes_from_the_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    assert _help(["--version"], capsys) == f"cdbench{version('cdbench')}"


def test_every_subcommand_has_a_description_of_its_own() -> None:
    (commands,) = [
        action
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    ]
    assert {"predict", "doctor", "check", "train"} <= set(commands.choices)
    for name, command in commands.choices.items():
        assert command.description, name
        assert command.description != build_parser().description, name


def test_help_lists_the_experiments_of_the_params_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    experiments = {"ifn-ds-synthetic": {"model": "ifn", "loss": "ifn_ds", "dataset": "synthetic",
                                        "recipe": "demo", "seeds": [0]}}  # fmt: skip
    params = write_repo_params(tmp_path / "mine.yaml", experiments=experiments)
    out = _help(["--params", str(params), "train", "--help"], capsys)
    assert f"anexperimentof{params}:ifn-ds-synthetic" in out
    assert "bsfnet-sisb-cdd" not in out

    monkeypatch.chdir(tmp_path)  # no params.yaml here: --help still works
    out = _help(["predict", "--help"], capsys)
    assert "anexperimentofparams.yaml" in out and "ifn-ds-synthetic" not in out
    assert "{demo,full}" in _help(["check", "--help"], capsys)
    assert "{cdd,levir-cd}" in _help(["download", "--help"], capsys)


def test_check_picks_the_profile_the_evaluated_runs_allow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    references = load_references(REPO / "references.yaml")
    assert default_profile(None, references) == ("full", "no evaluated run yet")
    synthetic = pd.DataFrame({"dataset": ["synthetic", "synthetic"]})
    assert default_profile(synthetic, references) == ("demo", "evaluated runs on synthetic")
    both = pd.DataFrame({"dataset": ["synthetic", "cdd"]})
    assert default_profile(both, references) == ("full", "evaluated runs on cdd")

    # Wired into `cdbench check`: it says which profile it chose, and why.
    reports = tmp_path / "reports"
    (reports / "metrics").mkdir(parents=True)
    args = ["--params", str(REPO / "params.yaml"), "check", "--reports", str(reports)]
    main([*args, "--references", str(REPO / "references.yaml")])
    out = capsys.readouterr().out
    assert out.startswith("profile full: no evaluated run yet (choose with --profile demo|full)")


@pytest.mark.parametrize("command", [["predict", "ifn-ds-synthetic", "a.png", "b.png"], ["doctor"]])
def test_new_commands_refuse_a_missing_params_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    assert main(["--params", str(tmp_path / "typo.yaml"), *command]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cdbench {command[0]}: error: params file {tmp_path / 'typo.yaml'}: ")
    assert len(err.splitlines()) == 1
