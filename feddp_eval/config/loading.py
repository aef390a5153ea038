"""Reading and writing configs: TOML files and nested dicts to dataclasses (every problem listed at
once), and back to dicts, TOML and a config hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

from feddp_eval.config.sections import ExperimentConfig, server_modification
from feddp_eval.errors import ConfigError

C = TypeVar("C")

# Fields that do not change a training run's numbers; left out of its config hash.
_NOT_HASHED = frozenset({"device", "attack"})


def from_dict(cls: type[C], raw: Mapping[str, Any], *, where: str = "") -> C:
    """Build dataclass ``cls`` from a nested mapping; every unknown key or bad type is reported."""
    problems: list[str] = []
    value = _build(cls, raw, where, problems)
    if problems:
        raise ConfigError(problems)
    return value


def _build(cls: type[C], raw: Any, where: str, problems: list[str]) -> C:
    if not isinstance(raw, Mapping):
        problems.append(f"`{where or 'config'}` must be a table, but got {raw!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    raw = _nest_tables(cls, raw, known)
    for key in sorted(set(raw) - known):
        name = f"{where}.{key}" if where else key
        problems.append(f"unknown key `{name}`; known keys here: {', '.join(sorted(known))}")
    kwargs: dict[str, Any] = {}
    for key in known & set(raw):
        name = f"{where}.{key}" if where else key
        kwargs[key] = _coerce(hints[key], raw[key], name, problems)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # only reachable on a coercion failure already reported
        problems.append(str(exc))
        return cls()


def _nest_tables(cls: type, raw: Mapping[str, Any], known: set[str]) -> Mapping[str, Any]:
    """Move unknown sub-tables into the field a class names in ``NESTED_TABLES`` (``[attack.dlg]`` →
    ``attack.options["dlg"]``); an entry the field itself names (``[attack.options.dlg]``) wins."""
    into = getattr(cls, "NESTED_TABLES", None)
    extra = {k: v for k, v in raw.items() if k not in known and isinstance(v, Mapping)}
    if into is None or not extra:
        return raw
    nested = dict(raw.get(into) or {}) if isinstance(raw.get(into), Mapping) else {}
    return {**{k: v for k, v in raw.items() if k not in extra}, into: {**extra, **nested}}


def _coerce(hint: Any, value: Any, name: str, problems: list[str]) -> Any:
    """Check ``value`` against a field type, converting lists to tuples and ints to floats."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, name, problems)  # type: ignore[arg-type]
    origin = get_origin(hint)
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
            problems.append(f"`{name}` must be a table of tables, but got {value!r}")
            return {}
        return {str(k): dict(v) for k, v in value.items()}
    if origin is Literal:
        if value not in get_args(hint):
            choices = ", ".join(repr(a) for a in get_args(hint))
            problems.append(f"`{name}` must be one of {choices}, but got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in get_args(hint):
            trial: list[str] = []
            converted = _coerce(option, value, name, trial)
            if not trial:
                return converted
        problems.append(f"`{name}` must be {_describe(hint)}, but got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            problems.append(f"`{name}` must be a list, but got {value!r}")
            return value
        item = get_args(hint)[0]
        return tuple(_coerce(item, v, f"{name}[{i}]", problems) for i, v in enumerate(value))
    if hint is type(None):
        if value is not None:
            problems.append(f"`{name}` must be empty, but got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        problems.append(f"`{name}` must be {_describe(hint)}, but got {value!r}")
    return value


def _describe(hint: Any) -> str:
    if get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(hint) if a is not type(None))
    if get_origin(hint) is tuple:
        return f"a list of {_describe(get_args(hint)[0])}"
    if dataclasses.is_dataclass(hint):
        return "a table"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


MAX_TOML_BYTES = 10 * 2**20


def read_toml(path: str | Path, *, what: str = "config file") -> dict[str, Any]:
    """A TOML file as a dict; a missing file or a syntax error (with its line) is a ConfigError."""
    path = Path(path)
    try:
        if path.exists() and not path.is_file():  # a folder, or a device such as /dev/zero
            raise ConfigError(f"{what} {path} is not a regular file; give a TOML file")
        if path.exists() and path.stat().st_size > MAX_TOML_BYTES:
            raise ConfigError(f"{what} {path} is over {MAX_TOML_BYTES} bytes, too large to be a config")
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} does not exist; check the path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a UTF-8 text file (binary?); give a TOML file") from None
    except OSError as exc:  # a directory, a device, no permission
        raise ConfigError(f"{what} {path} cannot be read ({exc.strerror or exc}); give a TOML file") from None


def load_config(path: str | Path, *, check: bool = True) -> ExperimentConfig:
    """Read a TOML experiment file; every problem in it is reported at once (``check=False``: its
    tables and types only, for a command that validates once after applying its flags)."""
    raw = read_toml(path)
    try:
        from feddp_eval.config.validation import validate

        config = from_dict(ExperimentConfig, raw)
        return validate(config) if check else config
    except ConfigError as exc:
        raise ConfigError(exc.problems, source=str(path)) from None


# --------------------------------------------------------------------------- output


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (tuples become lists, for TOML and JSON)."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def config_hash(config: ExperimentConfig, *, include_attack: bool = False) -> str:
    """SHA-256 (hex) of the fields that determine a training run's numbers (and the attack's, if asked)."""
    skip = _NOT_HASHED - ({"attack"} if include_attack else set())
    raw = {k: v for k, v in _hashed(config).items() if k not in skip}
    if (server := server_modification(config)) is not None:
        raw["server"] = server  # a malicious server trains a different run; honest hashes are unchanged
    blob = json.dumps(raw, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _hashed(config: Any) -> dict[str, Any]:
    """``to_dict(config)`` without the settings added after hashes were first published that are still
    at their default (field metadata :data:`~feddp_eval.config.fields.ADDED`): a new setting left alone
    keeps every existing run's hash, so finished runs and sweep points are still found. A setting that
    only matters under a switch (``setting(only_with=...)``) stays out whatever its value while the
    switch is off; one that only acts under some values of another (``setting(acts_when=...)``) is
    hashed as its published value where it does not act."""
    raw = to_dict(config)
    for f in fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            raw[f.name] = _hashed(value)
        elif (rule := f.metadata.get("acts_when")) and getattr(config, rule[0]) not in rule[1]:
            raw[f.name] = rule[2]
        elif f.metadata.get("hash") == "omit-default" and (value == _default(f) or _switched_off(config, f)):
            del raw[f.name]
    return raw


def _switched_off(config: Any, f: dataclasses.Field[Any]) -> bool:
    switch = f.metadata.get("only_with")
    return switch is not None and not getattr(config, switch)


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def to_toml(config: Any) -> str:
    """Serialise a config dataclass as TOML that :func:`load_config` reads back unchanged."""
    raw = to_dict(config)
    lines = [f"{k} = {_toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict) and v is not None]
    for section, table in raw.items():
        if isinstance(table, dict):
            lines += _toml_table(section, table)
    return "\n".join(lines) + "\n"


def _toml_table(name: str, table: dict[str, Any]) -> list[str]:
    """``[name]`` with its values, then its non-empty sub-tables (``[defense.server]``,
    ``[attack.options.dlg]``)."""
    lines = ["", f"[{name}]"]
    lines += [
        f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None and not isinstance(v, dict)
    ]
    for key, sub in table.items():
        if isinstance(sub, dict) and sub:
            lines += _toml_table(f"{name}.{key}", sub)
    return lines


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return str(value)
