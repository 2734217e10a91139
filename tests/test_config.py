"""params.yaml is checked as a whole before any work: unknown keys, wrong types, bad values."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.config import Params, SynthConfig, from_dict, load_params
from benchmark.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_repository_params_file_loads() -> None:
    params = load_params(REPO / "params.yaml")
    assert isinstance(params, Params)
    assert params.synth == SynthConfig()  # the defaults are the repository's values
    assert params.recipes["bsfnet-official"].optimizer.lr == 1e-5  # "1.0e-5" in YAML
    # 3 seeds per real experiment: runs named <experiment>-s<seed>
    assert {r.name for r in params.runs()} >= {"bsfnet-sisb-cdd-s0", "ifn-ds-levir-cd-s2"}
    assert params.data.prepared("synthetic") == Path("data/prepared/synthetic")


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    assert load_params(tmp_path / "absent.yaml") == Params()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("synth:\n  sede: 1\n", "synth.sede"),
        ("colour: red\n", "colour"),
        ("synth:\n  size: big\n", "synth.size: expected an integer"),
        ("synth:\n  size: 100\n", "synth.size: expected a multiple of 32"),
        ("synth:\n  train: 0\n", "synth.train: expected at least 1"),
        ("synth:\n  seed: true\n", "synth.seed: expected an integer"),
        ("data: [1, 2]\n", "expected a mapping for DataConfig"),
        ("synth: {seed: 1\n", "not valid YAML"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_params(path)


def test_bad_params_fail_the_command_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("synth:\n  sizee: 64\n")
    out = tmp_path / "synthetic"
    assert main(["--params", str(path), "synth", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "synth.sizee" in err and "accepts:" in err
    assert not out.exists()


@dataclass(frozen=True)
class _Inner:
    rate: float = 1.0
    names: list[str] = field(default_factory=list)
    mode: str | None = None


@dataclass(frozen=True)
class _Outer:
    inner: _Inner = field(default_factory=_Inner)
    steps: dict[str, int] = field(default_factory=dict)


def test_from_dict_converts_nested_types() -> None:
    cfg = from_dict(_Outer, {"inner": {"rate": 2, "names": ["a"]}, "steps": {"x": 3}}, "p")
    assert cfg.inner.rate == 2.0 and isinstance(cfg.inner.rate, float)
    assert cfg.inner.names == ["a"] and cfg.inner.mode is None
    assert cfg.steps == {"x": 3}
    with pytest.raises(ConfigError, match=r"p.inner.names\[1\]: expected a string"):
        from_dict(_Outer, {"inner": {"names": ["a", 2]}}, "p")
    with pytest.raises(ConfigError, match=r"p.steps.x: expected an integer"):
        from_dict(_Outer, {"steps": {"x": 1.5}}, "p")


def test_synth_config_defaults_are_valid() -> None:
    assert SynthConfig().train > SynthConfig().val > 0
