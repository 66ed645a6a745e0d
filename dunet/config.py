"""Typed configs from plain dicts (YAML, JSON, `--set key=value`), with errors that name the key.

Every config is a dataclass. A field may list its allowed values in
`field(metadata={"choices": (...)})`; `from_dict` rejects unknown keys and values
outside the choices with a `DunetError` that names the key and what is allowed.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import types
import typing
from typing import Any

import yaml

from dunet import DunetError


def choice(default: Any, choices: tuple, doc: str = "") -> Any:
    return dataclasses.field(default=default, metadata={"choices": choices, "doc": doc})


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except DunetError as err:
                errors.append(str(err))
        raise DunetError(errors[0] if errors else f"{key}: bad value {value!r}")
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise DunetError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(annotation, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise DunetError(f"{key}: expected a list, got {value!r}")
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")  # "false" really means False
        raise DunetError(f"{key}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise DunetError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise DunetError(f"{key}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise DunetError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise DunetError(f"{key}: expected a number, got {value!r}") from None
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise DunetError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass `cls` from `data`; unknown keys and bad values raise DunetError."""
    if data is None:
        data = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise DunetError(
            f"unknown config key '{prefix}{unknown[0]}'; allowed keys: {', '.join(prefix + k for k in fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        key = prefix + name
        value = _coerce(value, hints[name], key)
        choices = fields[name].metadata.get("choices")
        if choices is not None and value not in choices:
            allowed = ", ".join("null" if c is None else str(c) for c in choices)
            raise DunetError(f"config key {key!r}: {value!r} is not allowed; choose one of: {allowed}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise DunetError(f"{prefix.rstrip('.') or cls.__name__}: {err}") from None


def to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `key.sub=value` strings (values parsed as YAML scalars) to a nested dict."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise DunetError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as err:
            reason = str(err).splitlines()[0]
            raise DunetError(f"--set {item!r}: the value is not valid YAML ({reason})") from None
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return data


# --- value ranges: one home for "is this number usable", for config keys and CLI flags alike ------------


def range_problem(value: float, low: float | None = None, high: float | None = None, *,
                  above_low: bool = False, below_high: bool = False) -> str | None:
    """What is wrong with `value` for the range [low, high] (open ends with `above_low` / `below_high`),
    or None. NaN and infinities are always wrong: no setting means "not a number"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "must be a finite number"
    if low is not None and (value <= low if above_low else value < low):
        return f"must be {'>' if above_low else '>='} {low}"
    if high is not None and (value >= high if below_high else value > high):
        return f"must be {'<' if below_high else '<='} {high}"
    return None


def check_range(name: str, value: float, low: float | None = None, high: float | None = None, *,
                above_low: bool = False, below_high: bool = False, note: str = "") -> None:
    """ValueError "NAME VALUE: must be ..." for a dataclass's __post_init__ (from_dict adds the key's prefix)."""
    problem = range_problem(value, low, high, above_low=above_low, below_high=below_high)
    if problem:
        raise ValueError(f"{name} {value!r}: {problem}" + (f" ({note})" if note else ""))


def flag_range(kind: type = int, low: float | None = None, high: float | None = None, *,
               above_low: bool = False) -> Any:
    """An argparse `type=` that parses an int or float and checks its range, so that a bad flag value
    is refused when the command line is read (argparse names the flag)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        problem = range_problem(value, low, high, above_low=above_low)
        if problem:
            raise argparse.ArgumentTypeError(f"{text}: {problem}")
        return value

    return parse


def field_docs(cls: type) -> dict[str, str]:
    """The documentation of each field of dataclass `cls`, as written once in its source: the comment at the
    end of the field's line, else the comment lines just above it, else the `doc` of `choice(...)`."""
    import inspect
    import re

    docs: dict[str, str] = {}
    above: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("# ").strip())
            continue
        match = re.match(r"(\w+): [^=]+(?:=.*?)?(?:  # (.*))?$", text)
        if match and match.group(1) in {f.name for f in dataclasses.fields(cls)}:
            docs[match.group(1)] = match.group(2) or " ".join(above)
        above = []
    for f in dataclasses.fields(cls):
        if not docs.get(f.name) and f.metadata.get("doc"):
            docs[f.name] = f.metadata["doc"]
    return docs


DEVICE_FORMS = "auto, cpu, cuda or cuda:N"


def check_device_name(text: str) -> str:
    """`text` if it is a device name dunet accepts (the config and CLI check it before reading any data)."""
    if text not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", text):
        raise DunetError(f"device {text!r}: choose one of {DEVICE_FORMS}")
    return text
