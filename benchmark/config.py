"""Typed configuration loaded from `params.yaml`.

Every section of `params.yaml` is a dataclass. `from_dict` builds one from plain YAML data and
rejects, by dotted name, any key the dataclass does not declare, any value of the wrong type,
and (through each dataclass's `__post_init__`) any value out of range. Nothing starts before
the whole file has been checked.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from benchmark.errors import ConfigError

T = TypeVar("T")

DATASETS = ("cdd", "levir-cd", "synthetic")
"""Every dataset name the suite knows (design.md)."""


@dataclass(frozen=True)
class DataConfig:
    """Where the datasets live on disk."""

    raw_dir: str = "data/raw"
    prepared_dir: str = "data/prepared"

    def raw(self, dataset: str) -> Path:
        return Path(self.raw_dir) / dataset

    def prepared(self, dataset: str) -> Path:
        return Path(self.prepared_dir) / dataset


@dataclass(frozen=True)
class SynthConfig:
    """The built-in synthetic dataset (`cdbench synth`)."""

    seed: int = 0
    size: int = 256
    train: int = 320
    val: int = 80
    test: int = 80

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ConfigError(f"synth.seed: expected a non-negative integer, got {self.seed}")
        if self.size < 64 or self.size % 32:
            raise ConfigError(f"synth.size: expected a multiple of 32 >= 64, got {self.size}")
        for split in ("train", "val", "test"):
            count = getattr(self, split)
            if count < 1:
                raise ConfigError(f"synth.{split}: expected at least 1 pair, got {count}")


@dataclass(frozen=True)
class Params:
    """The whole of `params.yaml`."""

    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check `params.yaml`; a missing file gives the defaults."""
    path = Path(path)
    if not path.exists():
        return Params()
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return from_dict(Params, raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass `cls` from `data`, checking keys and types recursively.

    `where` is the dotted path of `data` used in error messages (e.g. `synth`).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where or 'top level'}: expected a mapping for {cls.__name__}, "
            f"got {type(data).__name__}"
        )
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        names = ", ".join(f"{_join(where, str(k))}" for k in unknown)
        raise ConfigError(
            f"unknown key(s) {names}; {cls.__name__} accepts: {', '.join(sorted(fields))}"
        )
    values = {}
    for name, value in data.items():
        values[name] = _convert(hints[name], value, _join(where, name))
    missing = [
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s): {', '.join(missing)}")
    return cls(**values)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)  # type: ignore[arg-type]
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where}: expected one of {list(allowed)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {hint}: " + "; ".join(errors))
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = get_args(hint)[:1] or (Any,)
        converted = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        key_t, val_t = get_args(hint)
        return {
            _convert(key_t, k, f"{where}"): _convert(val_t, v, f"{where}.{k}")
            for k, v in value.items()
        }
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"config type {hint!r} at {where} is not supported by from_dict")
