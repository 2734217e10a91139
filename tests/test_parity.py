"""`cdbench parity` (benchmark/speed/parity.py) on a tiny synthetic dataset."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmark.cli import main
from benchmark.data.synth import generate_synthetic
from benchmark.speed.parity import render_parity, runtimes
from tests.conftest import runtime_config, synth_config, write_repo_params
from tests.data.tiny import TINY as TRAINING_TINY

# the tiny recipe and experiment of the training tests, with params.yaml's checkpoint interval
TINY: dict[str, Any] = {
    **TRAINING_TINY,
    "runtime": {k: v for k, v in TRAINING_TINY["runtime"].items() if k != "checkpoint_every"},
}


@pytest.fixture(scope="module")
def params_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("parity")
    generate_synthetic(folder / "prepared" / "synthetic", synth_config(size=64, train=16))
    folders = {"raw_dir": str(folder / "raw"), "prepared_dir": str(folder / "prepared")}
    return write_repo_params(folder / "params.yaml", **{**TINY, "data": folders})


def test_runtimes_switch_the_optimisations_of_the_device() -> None:
    base = runtime_config(bf16=True, channels_last=True, fused_optimizer=True, compile=True)
    cpu = runtimes(base, torch.device("cpu"))
    baseline = cpu["baseline"]
    assert not (baseline.bf16 or baseline.channels_last or baseline.fused_optimizer)
    assert not baseline.compile and not baseline.progress and not baseline.system_metrics
    fast = cpu["optimised"]
    assert not (fast.fused_optimizer or fast.channels_last or fast.bf16 or fast.compile)
    asked = runtimes(base, torch.device("cpu"), channels_last=True, fused_optimizer=True)
    assert asked["optimised"].channels_last and asked["optimised"].fused_optimizer
    cuda = runtimes(base, torch.device("cuda"))["optimised"]
    assert cuda.bf16 and cuda.channels_last and cuda.fused_optimizer and cuda.compile


def test_parity_trains_both_runtimes_and_compares_the_validation_f1(
    params_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "reports"
    args = ["--params", str(params_path), "parity", "--device", "cpu", "--channels-last"]
    args += ["--fused-optimizer", "--seed-noise"]
    # six steps from scratch on four validation pairs: the F1 is mostly noise, and rounding
    # differences move it by points; the demo's figures are in reports/parity.md
    assert main([*args, "--tolerance", "100", "--out", str(out)]) == 0
    result = json.loads((out / "parity.json").read_text())
    (row,) = result["experiments"]
    assert row["experiment"] == "bsfnet-bce-synthetic" and row["selection"] == "val/f1"
    for setting in ("baseline", "optimised"):
        assert [v["step"] for v in row[setting]["validations"]] == [3, 6]
        assert 0 <= row[setting]["selection"] <= 100
        assert 0 < row[setting]["val_max_f1"] <= 100  # whole split, threshold swept
    assert row["optimised"]["runtime"]["fused_optimizer"]
    assert row["optimised"]["runtime"]["channels_last"]
    assert not row["baseline"]["runtime"]["fused_optimizer"]
    assert row["difference"] == pytest.approx(
        row["optimised"]["val_max_f1"] - row["baseline"]["val_max_f1"]
    )
    assert row["within_tolerance"] and result["passed"] and result["tolerance"] == 100
    # the baseline again with the next seed: the seed-to-seed difference of the protocol
    noise = row["baseline_next_seed"]
    assert row["baseline"]["seed"] == 0 and noise["seed"] == 1
    assert not noise["runtime"]["fused_optimizer"] and [
        v["step"] for v in noise["validations"]
    ] == [3, 6]
    assert row["seed_difference"] == pytest.approx(
        noise["val_max_f1"] - row["baseline"]["val_max_f1"]
    )
    assert row["within_seed_difference"] == (abs(row["difference"]) <= abs(row["seed_difference"]))
    markdown = (out / "parity.md").read_text()
    assert "fused_optimizer, channels_last" in markdown and "All within tolerance." in markdown
    assert "next seed, baseline" in markdown


def test_parity_fails_when_the_runtimes_disagree() -> None:
    row = {
        "experiment": "x",
        "seed": 0,
        "selection": "val/f1",
        "difference": 2.0,
        "within_tolerance": False,
        "baseline": {
            "val_max_f1": 50.0,
            "selection": 40.0,
            "seconds": 1.0,
            "validations": [{"step": 3, "score": 40.0}],
        },
        "optimised": {
            "val_max_f1": 52.0,
            "selection": 41.0,
            "seconds": 1.0,
            "validations": [{"step": 3, "score": 41.0}],
        },
    }
    runtime = {"fused_optimizer": True, "channels_last": False, "bf16": False, "compile": False}
    result = {
        "device": "cpu",
        "torch": torch.__version__,
        "tolerance": 0.5,
        "runtimes": {"baseline": runtime, "optimised": runtime},
        "experiments": [row],
        "passed": False,
    }
    markdown = render_parity(result)
    assert "| NO " in markdown and "NOT all within tolerance." in markdown


def test_parity_refuses_an_unknown_experiment(params_path: Path, tmp_path: Path) -> None:
    args = ["--params", str(params_path), "parity", "--experiment", "nope", "--out", str(tmp_path)]
    assert main(args) == 1
