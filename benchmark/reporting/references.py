"""The reference scores of `references.yaml`: published numbers (profile `full`) and the
synthetic demo's recorded scores (profile `demo`).

Each row says which of OUR protocols measures what the source measured (`protocol`, one of
`PROTOCOLS`), so the report and `cdbench check` compare like with like. Values are percent,
pooled over the test set (each row names its source and citation); a row whose values are
all empty is a reference we know exists but have not transcribed (BSFNet's letter): it is shown
as "reference missing" and never passes or fails a check.

Rows are typed (`Reference`) and checked with `benchmark.config.validate`: unknown keys,
protocols, models, losses or datasets, a loss that does not fit the model
(`benchmark.losses.check_pair`), values outside 0..100 and duplicate rows are refused with the
file and row named.

A demo row may carry its measured `spread` (`Spread`: the std, mean, range of one run's F1 over
seeds x CPU kernel paths, and the command that measured it). Without an explicit `tolerance`,
such a row's tolerance is derived from it (`tolerance_for`, used by `cdbench check` and the
report alike): `TOLERANCE_SIGMAS` standard errors of the mean over the seeds evaluated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import yaml

from benchmark.config import PLAIN, validate
from benchmark.data.datasets import DATASETS
from benchmark.errors import ConfigError
from benchmark.losses import check_pair

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


@dataclass(frozen=True)
class ReferenceValues:
    """Percent values of the change class; None where the source gives none."""

    __pydantic_config__ = PLAIN

    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    iou: float | None = None
    oa: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


TOLERANCE_SIGMAS = 3.0
"""How many standard errors of our mean a spread-derived tolerance allows below a reference.

Our figure is the mean over the n seeds evaluated; if one run's F1 has the measured std sigma
(over seeds and CPU kernel paths: another CPU acts like another seed), that mean has std
sigma / sqrt(n). Three of those below the recorded mean is missed by chance about once in 740
checks of a row (one-sided, normal), while a run that stopped learning, tens of points lower,
still fails. The recorded mean's own error (sigma / sqrt(spread.runs)) is not added: it is
small when many more runs were measured than are checked."""


@dataclass(frozen=True)
class Spread:
    """What was measured for a demo row: one run's F1 (points, the row's protocol) over the
    runs measured with `seeds` on `kernel_paths` (not necessarily every seed on every path),
    and the command that measured it."""

    __pydantic_config__ = PLAIN

    std: float
    """Sample standard deviation (ddof 1) of one run's F1 over the `runs` runs."""
    mean: float
    min: float
    max: float
    runs: int
    """How many (seed, kernel path) runs: at least one per seed and per path, at most
    len(seeds) x len(kernel_paths)."""
    seeds: tuple[int, ...]
    kernel_paths: tuple[str, ...]
    """The CPU kernel paths emulated, e.g. "ONEDNN_MAX_CPU_ISA=AVX2", "default"."""
    command: str
    """The command that measured them (so anyone can measure them again)."""
    pooled_std: float | None = None
    """The pooled within-experiment std of one run's F1 over every demo row of this protocol
    (each run about its own experiment's mean; ddof = runs - experiments). A few runs give a
    row's own `std` a wide error, while every demo run shares the recipe and its chaos, so the
    tolerance uses the larger of the two (`sigma`)."""

    @property
    def sigma(self) -> float:
        """The std a tolerance is derived from: the larger of `std` and `pooled_std`."""
        return max(self.std, self.pooled_std or 0.0)

    def check(self, where: str) -> None:
        """Refuse impossible values, naming `where` (e.g. `demo[0].spread`)."""
        for name in ("std", "mean", "min", "max", "pooled_std"):
            value = getattr(self, name)
            if value is None and name == "pooled_std":
                continue
            if not math.isfinite(value) or not 0 <= value <= 100:
                raise ConfigError(f"{where}.{name}: expected points of F1 in 0..100, got {value}")
        if not self.min <= self.mean <= self.max:
            raise ConfigError(
                f"{where}: expected min <= mean <= max, got min {self.min}, mean {self.mean}, "
                f"max {self.max}"
            )
        if self.runs < 2:
            raise ConfigError(
                f"{where}.runs: a standard deviation needs at least 2 runs, got {self.runs}"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"{where}.seeds: expected distinct seeds, got {list(self.seeds)}")
        paths = self.kernel_paths
        if not paths or len(set(paths)) != len(paths) or not all(p.strip() for p in paths):
            raise ConfigError(
                f"{where}.kernel_paths: expected distinct names such as "
                f'"ONEDNN_MAX_CPU_ISA=AVX2" or "default", got {list(paths)}'
            )
        fewest, most = max(len(self.seeds), len(paths)), len(self.seeds) * len(paths)
        if not fewest <= self.runs <= most:
            raise ConfigError(
                f"{where}.runs: {len(self.seeds)} seeds on {len(paths)} kernel paths are "
                f"{fewest} to {most} runs, got {self.runs}; record every run measured"
            )
        if not self.command.strip():
            raise ConfigError(f"{where}.command: give the command that measured the spread")


@dataclass(frozen=True)
class Tolerance:
    """The tolerance a row is checked with (points), and where it comes from."""

    value: float
    origin: Literal["references.yaml", "--tolerance", "spread"]
    """The row's own `tolerance`, the command's default, or derived from the row's spread."""
    formula: str = ""
    """How a spread-derived one is computed, e.g. "3 x 4.10 / sqrt(2)"; empty otherwise."""

    def cell(self) -> str:
        return tolerance_cell(self.value, self.formula)


def tolerance_cell(value: float, formula: str) -> str:
    """A tolerance for tables: `5`, or `8.70 = 3 x 4.10 / sqrt(2)` for a spread-derived one."""
    return f"{value:.2f} = {formula}" if formula else f"{value:g}"


@dataclass(frozen=True)
class Reference:
    """One row of references.yaml."""

    __pydantic_config__ = PLAIN

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
    spread: Spread | None = None
    """What was measured (demo rows); derives the tolerance when `tolerance` is not given."""
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
        try:
            check_pair(self.model, self.loss)
        except ConfigError as exc:
            raise ConfigError(f"{where}.loss: {exc}") from None
        if self.dataset not in DATASETS:
            raise ConfigError(
                f"{where}.dataset: expected one of {list(DATASETS)}, got {self.dataset!r}"
            )
        if self.protocol not in PROTOCOLS:
            raise ConfigError(
                f"{where}.protocol: expected one of our protocols {list(PROTOCOLS)}, "
                f"got {self.protocol!r}"
            )
        if self.protocol.startswith("whole_") and not DATASETS[self.dataset].has_whole:
            whole = ", ".join(name for name, d in DATASETS.items() if d.has_whole)
            raise ConfigError(f"{where}.protocol: whole-image protocols exist for {whole} only")
        for name, value in self.values.as_dict().items():
            if value is not None and not 0 <= value <= 100:
                raise ConfigError(
                    f"{where}.values.{name}: expected a percentage in 0..100, got {value}"
                )
        if self.tolerance is not None and not math.isfinite(self.tolerance):
            raise ConfigError(f"{where}.tolerance: expected a finite number, got {self.tolerance}")
        if self.spread is not None:
            self.spread.check(f"{where}.spread")
            f1 = self.values.f1
            if f1 is not None and not self.spread.min <= f1 <= self.spread.max:
                raise ConfigError(
                    f"{where}.values.f1: {f1} lies outside the measured range "
                    f"{self.spread.min}..{self.spread.max} of its spread; record the mean of "
                    f"the runs measured"
                )
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
                reference = validate(Reference, {**row, "profile": profile}, where)
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


def tolerance_for(reference: Reference | None, seeds: int, default: float) -> Tolerance:
    """The tolerance of `reference` when our figure is the mean over `seeds` evaluated seeds:
    the row's own `tolerance`; else, with a `spread`, TOLERANCE_SIGMAS x spread.sigma /
    sqrt(seeds) (at least one seed counted); else `default` (`--tolerance`). `cdbench check`
    and the report both call this, so they judge a row alike."""
    if reference is not None and reference.tolerance is not None:
        return Tolerance(reference.tolerance, "references.yaml")
    if reference is None or reference.spread is None:
        return Tolerance(default, "--tolerance")
    n = max(seeds, 1)
    std = reference.spread.sigma
    formula = f"{TOLERANCE_SIGMAS:g} x {std:.2f} / sqrt({n})"
    return Tolerance(TOLERANCE_SIGMAS * std / math.sqrt(n), "spread", formula)
