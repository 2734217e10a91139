"""Every experiment's model, loss and options checked before any work
(benchmark/training/options.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.config import load_params
from benchmark.errors import ConfigError
from benchmark.training.options import check_experiments

REPO = Path(__file__).resolve().parents[1]


def test_an_unknown_dice_form_stops_the_configuration_naming_the_experiment() -> None:
    params = load_params(REPO / "params.yaml")
    params.experiments["ifn-ds-cdd"].loss_options["dice"] = "cdlabb"
    with pytest.raises(ConfigError, match=r"experiments\.ifn-ds-cdd\.loss_options: .*'cdlabb'"):
        check_experiments(params)
