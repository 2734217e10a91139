"""Check every experiment's model, loss and their options before any work starts.

`params.yaml` is typed by benchmark/config.py, which does not import torch and so cannot know
the models and losses. `check_experiments` runs the registries' own checks on each experiment
(`benchmark.models.check_model_options`, `benchmark.losses.check_pair`, `build_loss`; each
loss is built once, so that a value it refuses, e.g. an unknown Dice form, stops here too) and
names the key in every error, e.g.
`experiments.bsfnet-sisb-cdd.model: unknown model 'bsfnett'; expected one of: bsfnet, ifn`.
"""

from __future__ import annotations

from collections.abc import Callable

from benchmark.config import ExperimentConfig, Params
from benchmark.errors import ConfigError
from benchmark.losses import build_loss, check_pair
from benchmark.models import check_model_options, model_options


def check_experiments(params: Params) -> None:
    """Raise ConfigError for the first experiment whose model, loss, pair or options are
    refused by the registries."""
    for name, experiment in params.experiments.items():
        check_experiment(name, experiment)


def check_experiment(name: str, experiment: ExperimentConfig) -> None:
    """Raise ConfigError, prefixed with `experiments.<name>.<key>`, for an unknown model or
    loss, a loss that does not fit the model, or options their constructors refuse."""
    checks: list[tuple[str, Callable[[], object]]] = [
        ("model", lambda: model_options(experiment.model)),
        ("loss", lambda: check_pair(experiment.model, experiment.loss)),
        ("model_options", lambda: check_model_options(experiment.model, experiment.model_options)),
        ("loss_options", lambda: build_loss(experiment.loss, **experiment.loss_options)),
    ]
    for key, check in checks:
        try:
            check()
        except ConfigError as exc:
            raise ConfigError(f"experiments.{name}.{key}: {exc}") from None
