"""Loading a training config's YAML: ``extends`` chains, section-by-section merges, dotted overrides, and the
typed build of the config dataclasses from the merged mapping, with clear errors (``config.py`` holds the sections).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any

import yaml

EXTENDS_KEY = "extends"


class TrainConfigError(ValueError):
    """A training config is missing a value, has an unknown key or a value of the wrong kind."""


def load_yaml_with_extends(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise TrainConfigError(f"{path}: 'extends' loops back to itself")
    if not path.is_file():
        raise FileNotFoundError(f"training config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise TrainConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise TrainConfigError(f"{path}: a training config must be a mapping")
    base = data.pop(EXTENDS_KEY, None)
    if base is None:
        return data
    return deep_merge(load_yaml_with_extends(path.parent / base, seen + (path,)), data)


def deep_merge(base: dict, update: dict) -> dict:
    """``update`` over ``base``; nested mappings merge, everything else is replaced."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_override(data: dict, item: str) -> None:
    """``a.b.c=value`` sets ``data['a']['b']['c']`` (value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise TrainConfigError(f"override {item!r} is not of the form key.path=value")
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise TrainConfigError(f"override {item!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def build_dataclass(kind: type, data: Any, where: str):
    """``kind`` (a dataclass) from a mapping: unknown keys, kinds of scalars and nested sections checked."""
    if not isinstance(data, dict):
        raise TrainConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(kind)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TrainConfigError(f"{where}: unknown key {key!r}{hint}; known: {sorted(fields)}")
    hints = typing.get_type_hints(kind)
    values = {}
    for key, value in data.items():
        nested = _dataclass_in(hints[key])
        if nested is not None and value is not None:
            value = build_dataclass(nested, value, f"{where}.{key}")
        else:
            value = _yaml_float(hints[key], value)
            _check_scalar(hints[key], value, f"{where}.{key}")
        values[key] = value
    return kind(**values)


def _yaml_float(hint, value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string: take it as the float it means where a float is expected."""
    if isinstance(value, str) and float in (typing.get_args(hint) or (hint,)):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_scalar(hint, value: Any, where: str) -> None:
    """Reject a value whose kind does not fit a scalar hint (``int``, ``float | None``, ...)."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    scalars = [a for a in allowed if a in (int, float, bool, str, type(None))]
    if len(scalars) != len(allowed):
        return  # containers and mixed hints are checked where they are used
    ok = any(
        (a is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (a is int and isinstance(value, int) and not isinstance(value, bool))
        or (a in (bool, str, type(None)) and isinstance(value, a))
        for a in scalars
    )
    if not ok:
        names = " or ".join("null" if a is type(None) else a.__name__ for a in scalars)
        raise TrainConfigError(f"{where} must be {names}, got {value!r}")


def _dataclass_in(hint) -> type | None:
    """The dataclass named by a type hint (``X`` or ``X | None``), if any."""
    candidates = typing.get_args(hint) or (hint,)
    for candidate in candidates:
        if dataclasses.is_dataclass(candidate):
            return candidate
    return None
