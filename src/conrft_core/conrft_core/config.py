"""Typed configuration: dataclasses filled from YAML, with errors that name the offending key.

Every configurable piece of the stack is a (possibly nested) dataclass with defaults. `from_dict` builds one
from plain data (a parsed YAML mapping), checking each key against the dataclass fields and each value against
the field's annotated type; the dataclass's own `__post_init__` then checks value ranges. All failures raise
`ConfigError` with the dotted key path, so `sim.action_scale.max_translation: -1` is reported as exactly that.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the key and the fix."""


def load_yaml(path: str | Path) -> dict:
    """Parse a YAML file that must hold a mapping at top level."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must contain a mapping at top level, got {type(data).__name__}")
    return data


def from_dict(cls: type[T], data: dict | None, prefix: str = "") -> T:
    """Build dataclass `cls` from `data`; unknown keys and mistyped values raise ConfigError."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"'{prefix or cls.__name__}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        key = _join(prefix, unknown[0])
        raise ConfigError(f"unknown config key '{key}'; valid keys here: {', '.join(sorted(fields))}")
    kwargs = {name: _convert(hints[name], value, _join(prefix, name)) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid config '{prefix or cls.__name__}': {exc}") from None


def to_dict(obj: Any) -> Any:
    """Plain-data view of a config dataclass (tuples become lists), for YAML/JSON output."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def first_difference(a: dict, b: dict, prefix: str = "") -> str | None:
    """Dotted name of the first key (sorted, depth first) whose value differs between two plain-data configs."""
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            found = first_difference(x, y, _join(prefix, key))
            if found:
                return found
        elif x != y:
            return _join(prefix, key)
    return None


def value_at(data: dict, dotted: str) -> Any:
    """The value under a dotted name (as `first_difference` returns it) in a plain-data config; None if absent."""
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(option, value, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if typing.get_origin(tp) is typing.Literal:
        if value not in typing.get_args(tp):
            choices = ", ".join(map(str, typing.get_args(tp)))
            raise ConfigError(f"config key '{key}' must be one of: {choices}; got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"config key '{key}' must have {len(args)} elements, got {len(value)}")
            items = [_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return origin(items)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if tp in (bool, str):
        if not isinstance(value, tp):
            raise ConfigError(f"config key '{key}' must be a {tp.__name__}, got {value!r}")
        return value
    if tp is Path:
        return Path(value)
    raise ConfigError(f"config key '{key}': unsupported type {tp}")  # a programming error, named clearly
