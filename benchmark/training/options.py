"""Check every experiment's model, loss and their options before any work starts.

`params.yaml` is typed by benchmark/config.py, which cannot know the models' and losses'
constructor options without importing torch. `check_experiments` does that part: each
experiment's `model` must be a key of `benchmark.models.MODELS`, its `loss` a key of
`benchmark.losses.LOSSES`, and `model_options` / `loss_options` keys those constructors take;
each loss is built once, so that a value it refuses (e.g. an unknown Dice form) stops here too.
Errors name the key, e.g. `experiments.bsfnet-sisb-cdd.model: unknown model 'bsfnett'; ...`.
"""

from __future__ import annotations

import inspect

from benchmark.config import Params
from benchmark.errors import ConfigError
from benchmark.losses import LOSSES, build_loss
from benchmark.models import MODELS, model_options


def check_experiments(params: Params) -> None:
    """Raise ConfigError for the first experiment whose model, loss or options are unknown."""
    for name, experiment in params.experiments.items():
        where = f"experiments.{name}"
        if experiment.model not in MODELS:
            raise ConfigError(
                f"{where}.model: unknown model {experiment.model!r}; expected one of: "
                f"{', '.join(sorted(MODELS))}"
            )
        if experiment.loss not in LOSSES:
            raise ConfigError(
                f"{where}.loss: unknown loss {experiment.loss!r}; expected one of: "
                f"{', '.join(sorted(LOSSES))}"
            )
        valid = model_options(experiment.model)
        unknown = sorted(set(experiment.model_options) - set(valid))
        if unknown:
            raise ConfigError(
                f"{where}.model_options: unknown option(s) {', '.join(unknown)} for model "
                f"{experiment.model!r}; valid: {', '.join(valid) or '(none)'}"
            )
        parameters = inspect.signature(LOSSES[experiment.loss].__init__).parameters
        valid_loss = [p for p in parameters if p != "self"]
        unknown = sorted(set(experiment.loss_options) - set(valid_loss))
        if unknown:
            raise ConfigError(
                f"{where}.loss_options: unknown option(s) {', '.join(unknown)} for loss "
                f"{experiment.loss!r}; valid: {', '.join(valid_loss) or '(none)'}"
            )
        try:  # the values too (e.g. an unknown Dice form): building a loss costs nothing
            build_loss(experiment.loss, **experiment.loss_options)
        except ConfigError as exc:
            raise ConfigError(f"{where}.loss_options: {exc}") from None
