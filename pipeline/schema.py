"""Typed config validation for nested dataclasses: every error collected, each with its key path and a fix.

The config schema (``pipeline/config.py``) is a tree of dataclasses whose fields carry their defaults,
their types and, in ``field(metadata=...)``, a ``help`` string and optional ``min``/``max`` bounds.
This module turns a raw mapping (parsed YAML plus ``key.path=value`` overrides) into those dataclasses,
or raises :class:`ConfigError` listing every problem at once: unknown keys (with a spelling
suggestion), wrong types, out-of-range values and unknown choices. It never coerces a value the user
wrote into something else (``"3"`` is not an int, ``1`` is not a bool).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

import yaml

# Bump when a change to code makes earlier cached stage outputs invalid: it is part of every stage hash.
# Here, in this project-import-free module, so pipeline.runs (which every writer imports) stays light.
SCHEMA_VERSION = 5


class ConfigError(Exception):
    """A user error in a config: one line per problem, each naming the key path and the fix."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def option(default: Any, help: str, **bounds: float) -> Any:
    """A schema field: its default, help text and optional ``min``/``max`` bounds, in one place.

    Every config section (``pipeline/config.py`` and the data sources' own sections) declares its
    fields with this, so validation, ``show-config`` and the docs read the same metadata.
    """
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata={"help": help, **bounds})
    return dataclasses.field(default=default, metadata={"help": help, **bounds})


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        inner = _type_name(args[0]) if args else "any"
        return f"a list of {inner}" if origin is list else f"a pair of {inner}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _check_scalar(value: Any, tp: Any, path: str, meta: dict, problems: list[str]) -> Any:
    """Validate one value against a (non-dataclass) type; append problems; return the value to store."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _check_scalar(value, args[0], path, meta, problems)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{path}: {value!r} is not a valid choice{hint}; use one of: "
                            + ", ".join(repr(c) for c in choices))
        return value
    if origin in (list, tuple):
        (inner, *rest) = get_args(tp) or (Any,)
        if not isinstance(value, list | tuple):
            problems.append(f"{path}: expected {_type_name(tp)}, got {value!r}; write it as [a, b, ...]")
            return value
        if origin is tuple and rest and rest[0] is not Ellipsis and len(value) != len(get_args(tp)):
            problems.append(f"{path}: expected {len(get_args(tp))} values, got {len(value)}; write [low, high]")
            return value
        items = [_check_scalar(v, inner, f"{path}[{i}]", meta, problems) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp, True)
    if not ok:
        problems.append(f"{path}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__}); "
                        f"set it to {_type_name(tp)}")
        return value
    if tp is float:
        value = float(value)
    lo, hi = meta.get("min"), meta.get("max")
    if tp in (int, float) and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        bounds = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        problems.append(f"{path}: {value!r} is out of range; use a value in {bounds}")
    return value


def build(cls: type, raw: Any, path: str, problems: list[str], base: Any = None) -> Any:
    """Build dataclass ``cls`` from ``raw`` (a mapping) on top of ``base``, the defaults in force there.

    ``base`` matters for nested sections: ``distill.train`` defaults to the distill section's own
    TrainConfig (its epochs, lr, ...), not to TrainConfig's class defaults, so setting one key of it
    keeps the section's other defaults.
    """
    base = base if base is not None else cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        problems.append(f"{path or '<root>'}: expected a mapping of keys, got {raw!r}; "
                        "indent its keys under it")
        return base
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean {(path + '.' if path else '') + close[0]!r}?" if close else \
                "valid keys here: " + ", ".join(fields)
            problems.append(f"{key_path}: unknown key; {hint} (remove it or fix the spelling)")
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build(tp, value, key_path, problems, getattr(base, key))
        else:
            kwargs[key] = _check_scalar(value, tp, key_path, dict(fields[key].metadata), problems)
    return dataclasses.replace(base, **kwargs)


def defaults_of(cls: type) -> None:
    """Check at import time that every field of a schema tree has a default (one source of truth)."""
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name} has no default")
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            defaults_of(tp)


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as YAML (``1`` int, ``0.5`` float, ``[a, b]`` list)."""
    if "=" not in item:
        raise ConfigError([f"{item}: an override must look like key.path=value (e.g. teacher.epochs=3)"])
    key, _, text = item.partition("=")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError([f"{key}: cannot read value {text!r} ({exc.__class__.__name__}); quote it"]) from exc
    return [k for k in key.strip().split(".") if k], value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``key.path=value`` overrides to a raw mapping (validation happens afterwards)."""
    for item in overrides:
        keys, value = parse_override(item)
        if not keys:
            raise ConfigError([f"{item}: empty key; write key.path=value"])
        node = raw
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return raw


def to_dict(obj: Any) -> Any:
    """Dataclass tree to plain dicts/lists (tuples become lists, so YAML/JSON round-trip)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj


def describe(cls: type, prefix: str = "", inst: Any = None) -> list[tuple[str, str, Any, str]]:
    """(key path, type, default, help) for every leaf of a schema tree, for docs and `show-config`.

    Nested sections take their defaults from the enclosing instance, not their class: ``distill.train``
    defaults to 40 epochs although TrainConfig's own default is 12.
    """
    rows = []
    hints = typing.get_type_hints(cls)
    inst = inst if inst is not None else cls()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, key + ".", getattr(inst, f.name))
        else:
            rows.append((key, _type_name(tp), to_dict(getattr(inst, f.name)), f.metadata.get("help", "")))
    return rows
