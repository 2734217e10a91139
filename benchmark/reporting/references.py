"""The reference scores of `references.yaml`: published numbers (profile `full`) and the
synthetic demo's recorded scores (profile `demo`).

Each row says which of OUR protocols measures what the source measured (`protocol`, one of
`PROTOCOLS`), so the report and `cdbench check` compare like with like. Values are percent,
pooled over the test set (../shared/reference/published-results.md); a row whose values are
all empty is a reference we know exists but have not transcribed (BSFNet's letter): it is shown
as "reference missing" and never passes or fails a check.

Rows are typed (`Reference`) and checked with `benchmark.config.from_dict`: unknown keys,
protocols, models, losses or datasets, values outside 0..100 and duplicate rows are refused with
the file and row named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import yaml

from benchmark.config import DATASETS, from_dict
from benchmark.errors import ConfigError

PROFILES = ("full", "demo")
"""`full`: the published numbers; `demo`: the built-in synthetic dataset."""
PROTOCOLS = (
    "fixed",
    "val_threshold",
    "test_best_optimistic",
    "whole_fixed",
    "whole_val_threshold",
    "whole_test_best_optimistic",
)
"""Our evaluation protocols, in report order (benchmark/evaluation/evaluate.py)."""
METRICS = ("precision", "recall", "f1", "iou", "oa")
"""The figures a reference may give, in report order (percent)."""
LOSSES_OF = {"bsfnet": ("sisb", "bce", "contrastive"), "ifn": ("ifn_ds",)}
"""Which losses each model is trained with (the experiments of params.yaml)."""


@dataclass(frozen=True)
class ReferenceValues:
    """Percent values of the change class; None where the source gives none."""

    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    iou: float | None = None
    oa: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Reference:
    """One row of references.yaml."""

    model: Literal["bsfnet", "ifn"]
    loss: str
    dataset: str
    protocol: str
    values: ReferenceValues
    source: str = "cdbench synthetic demo (recorded from a fresh-clone `make demo`, not published)"
    citation: str = ""
    protocol_description: str = ""
    note: str = ""
    tolerance: float | None = None
    profile: str = "full"

    @property
    def key(self) -> tuple[str, str, str, str]:
        """(model, loss, dataset, protocol): what a row of our results is matched on."""
        return (self.model, self.loss, self.dataset, self.protocol)

    @property
    def missing(self) -> bool:
        """True when the source is known but none of its values has been transcribed."""
        return all(value is None for value in self.values.as_dict().values())

    def label(self) -> str:
        """A short name for tables and errors, e.g. `ifn/ifn_ds levir-cd whole_fixed`."""
        return f"{self.model}/{self.loss} {self.dataset} {self.protocol}"

    def check(self, where: str) -> None:
        if self.loss not in LOSSES_OF[self.model]:
            raise ConfigError(
                f"{where}.loss: {self.model} is trained with {list(LOSSES_OF[self.model])}, "
                f"got {self.loss!r}"
            )
        if self.dataset not in DATASETS:
            raise ConfigError(
                f"{where}.dataset: expected one of {list(DATASETS)}, got {self.dataset!r}"
            )
        if self.protocol not in PROTOCOLS:
            raise ConfigError(
                f"{where}.protocol: expected one of our protocols {list(PROTOCOLS)}, "
                f"got {self.protocol!r}"
            )
        if self.protocol.startswith("whole_") and self.dataset != "levir-cd":
            raise ConfigError(f"{where}.protocol: whole-image protocols exist for levir-cd only")
        for name, value in self.values.as_dict().items():
            if value is not None and not 0 <= value <= 100:
                raise ConfigError(
                    f"{where}.values.{name}: expected a percentage in 0..100, got {value}"
                )
        if self.tolerance is not None and not math.isfinite(self.tolerance):
            raise ConfigError(f"{where}.tolerance: expected a finite number, got {self.tolerance}")
        if self.profile == "full" and not self.citation:
            raise ConfigError(f"{where}.citation: a published reference needs its citation")


def load_references(path: Path = Path("references.yaml")) -> list[Reference]:
    """Every row of `path`, checked, in file order (profile `full` first)."""
    if not path.exists():
        raise ConfigError(f"{path}: no references file; expected one at the repository root")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or set(data) - set(PROFILES):
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{path}: expected the top-level keys {list(PROFILES)}, got {keys}")
    references: list[Reference] = []
    seen: dict[tuple[str, tuple[str, str, str, str]], str] = {}
    for profile in PROFILES:
        rows = data.get(profile) or []
        if not isinstance(rows, list):
            raise ConfigError(f"{path}: {profile}: expected a list of rows")
        for index, row in enumerate(rows):
            where = f"{profile}[{index}]"
            if isinstance(row, dict) and "profile" in row:
                raise ConfigError(f"{path}: {where}: `profile` is given by the section")
            try:
                reference = from_dict(Reference, {**row, "profile": profile}, where)
                reference.check(where)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
            if (profile, reference.key) in seen:
                raise ConfigError(
                    f"{path}: {where}: {reference.label()} is already given by "
                    f"{seen[(profile, reference.key)]}; keep one row per model, loss, "
                    f"dataset and protocol"
                )
            seen[(profile, reference.key)] = f"{profile}[{index}]"
            references.append(reference)
    return references


def for_profile(references: list[Reference], profile: str) -> list[Reference]:
    """The rows of one profile (ValueError for an unknown profile)."""
    if profile not in PROFILES:
        raise ValueError(f"expected a profile in {list(PROFILES)}, got {profile!r}")
    return [reference for reference in references if reference.profile == profile]
