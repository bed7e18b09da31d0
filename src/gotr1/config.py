"""Typed configs from YAML: dataclasses filled from a file, with errors that name the file and line.

An unknown key, a missing required key or a value of the wrong type is one line such as
`configs/x.yaml:12: grpo.beta: expected a number, got 'high'`; a key a config class has retired (its
``MOVED`` mapping) names where the setting lives now. Overrides (`grpo.beta=0.02`, given after the
file on a command line) replace one setting each and are checked the same way, their errors naming the override:
`configs/x.yaml: override grpo.betta=0.02: unknown key`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path

import yaml


class ConfigError(ValueError):
    pass


_YAML11_EXPONENT = re.compile(r"[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+")


class FieldError(ValueError):
    """A value outside what a field means, raised by a config's ``__post_init__``; the loader reports it at
    the field's line."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


def check_range(field: str, value, *, low=None, high=None, low_open: bool = False, high_open: bool = False) -> None:
    """FieldError unless low <= value <= high (or < where open); None passes (an unset optional)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(field, f"expected a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise FieldError(field, f"must be a finite number, got {value}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        raise FieldError(field, f"must be {' and '.join(x for x in (lo, hi) if x)}, got {value}")


def check_choice(field: str, value, choices) -> None:
    if value not in choices:
        raise FieldError(field, f"must be one of {', '.join(map(str, choices))}, got {value!r}")


def _line_map(node, prefix=(), out=None, source: str = "config") -> dict[tuple, int]:
    """YAML path (tuple of keys) -> 1-based line, for error messages; a key given twice in one mapping is an
    error (YAML readers silently keep the last)."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            path = (*prefix, key.value)
            if key.value in seen:
                raise ConfigError(
                    f"{source}:{key.start_mark.line + 1}: {'.'.join(map(str, path))}: "
                    f"key given twice (line {out[path]} and here)"
                )
            seen.add(key.value)
            out[path] = key.start_mark.line + 1
            _line_map(value, path, out, source)
    return out


def _convert(value, hint, where: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: unexpected value {value!r}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value  # nested dataclasses are built by _build
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
            value = float(value)  # `1e-5`: YAML 1.1 (PyYAML) reads a number without a dot as text
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where}: expected a finite number, got {value!r}")
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else typing.Any
        items = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def _build(cls, data: dict, path: tuple, lines: dict, source: str):
    """lines: YAML path -> the file's line number, or the override (str) that set the value."""

    def where(p):
        dotted = ".".join(map(str, p))
        for n in range(len(p), 0, -1):
            if isinstance(lines.get(p[:n]), str):  # set by an override (p itself, or a section above it)
                return f"{source}: override {lines[p[:n]]}" + (f": {dotted}" if n < len(p) else "")
        line = lines.get(p)
        return f"{source}:{line}: {dotted}" if line else f"{source}: {dotted}"

    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    moved = getattr(cls, "MOVED", {})  # a class's retired keys -> where their settings live now
    for key in data:
        if key in moved:
            raise ConfigError(f"{where((*path, key))}: this setting moved; write it as {moved[key]}")
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{where((*path, key))}: unknown key (known: {known})")
    kwargs = {}
    for name, field in fields.items():
        if name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where(path) if path else source}: missing required key {name!r}")
            continue
        hint = hints[name]
        value = _convert(data[name], hint, where((*path, name)))
        target = _dataclass_in(hint)
        if target is not None and isinstance(value, dict):
            value = _build(target, value, (*path, name), lines, source)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except FieldError as exc:
        raise ConfigError(f"{where((*path, *exc.field.split('.')))}: {exc.message}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where(path) if path else source}: {exc}") from None


def _dataclass_in(hint):
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def load_config(path: str | Path, cls, overrides: Sequence[str] = ()):
    """Read a YAML file into the dataclass `cls` (nested dataclasses allowed).

    overrides: ``KEY=VALUE`` strings applied in order after the file, KEY a dotted path (``grpo.lora_r``) and
    VALUE read as a YAML value (``3``, ``1e-5``, ``null``, ``[tensorboard]``, ``{source: shapes}``); each
    replaces that setting (a mapping replaces the whole section) and is checked like the file's values."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a YAML config is UTF-8 text)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if node is None:  # nothing but blanks and comments: every default would pass for a choice
        raise ConfigError(f"{path}: the config file is empty (no settings in it)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    lines: dict[tuple, int | str] = dict(_line_map(node, source=str(path)))
    for override in overrides:
        _apply_override(data, lines, override, str(path))
    return _build(cls, data, (), lines, str(path))


def _apply_override(data: dict, lines: dict, override: str, source: str) -> None:
    """Set one ``KEY=VALUE`` in the file's data; its path (and everything under it) is then reported as the
    override in errors."""
    key, sep, text = override.partition("=")
    keys = key.strip().split(".")
    if not sep or not all(k.strip() for k in keys):
        raise ConfigError(f"{source}: override {override!r}: expected KEY=VALUE (e.g. grpo.steps=20)")
    keys = [k.strip() for k in keys]
    label = f"{'.'.join(keys)}={text}"
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: override {label}: invalid YAML value ({getattr(exc, 'problem', exc)})") from None
    section = data
    for depth, name in enumerate(keys[:-1]):
        if name not in section:  # a section the file leaves out (or a misspelt one: reported as this override)
            section[name] = {}
            lines[tuple(keys[: depth + 1])] = label
        if not isinstance(section[name], dict):
            raise ConfigError(f"{source}: override {label}: {'.'.join(keys[: depth + 1])} is a value, not a section")
        section = section[name]
    section[keys[-1]] = value
    target = tuple(keys)
    for p in [p for p in lines if p[: len(target)] == target]:
        del lines[p]  # the file's lines under a replaced key no longer describe its values
    lines[target] = label


def to_dict(config) -> dict:
    return dataclasses.asdict(config)
