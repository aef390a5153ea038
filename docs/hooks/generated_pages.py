"""MkDocs hook: pages built from the code and from ``benchmarks/RESULTS.md``, never copied by hand.

- ``reference/configuration.md``: every setting of :class:`feddp_eval.config.ExperimentConfig`
  (section, name, type, default, valid range, hash rule, help), walked from the dataclasses' fields,
  their ``Attributes:`` docstrings and their metadata (``feddp_eval/config/fields.py``); then each
  registered attack's own ``[attack.<name>]`` settings.
- ``results.md``: ``benchmarks/RESULTS.md`` as it is, so the manual links measured numbers
  instead of repeating them.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated pages to the site."""
    files.append(File.generated(config, "reference/configuration.md", content=configuration_page()))
    results = ROOT / "benchmarks" / "RESULTS.md"
    files.append(File.generated(config, "results.md", content=results.read_text(encoding="utf-8")))
    return files


def configuration_page() -> str:
    """The configuration reference as Markdown."""
    from attacks import ATTACKS
    from feddp_eval.config import ExperimentConfig

    out = [
        "# Configuration reference",
        "",
        "Generated from the fields of `feddp_eval.config` (`docs/hooks/generated_pages.py`): the",
        "defaults below are the dataclasses' own, the only defaults there are. A TOML file sets them",
        "by section; see the [configuration guide](../guides/configuration.md) for the file, the",
        "flags and the config hash.",
        "",
        "*Hash*: `omit-default` marks a setting added after config hashes were first published: left",
        "at its default it stays out of the hash, so earlier runs and sweep points keep theirs.",
        "",
    ]
    top = [f for f in dataclasses.fields(ExperimentConfig) if not _is_dataclass_field(ExperimentConfig, f)]
    out += _section("Top level", "", ExperimentConfig, top)
    hints = typing.get_type_hints(ExperimentConfig)
    for f in dataclasses.fields(ExperimentConfig):
        if _is_dataclass_field(ExperimentConfig, f):
            cls = hints[f.name]
            out += _section(f"[{f.name}]", _summary(cls), cls, list(dataclasses.fields(cls)))
    out += [
        "## Each attack's own settings: `[attack.<name>]`",
        "",
        "Checked against the attack's `Config`; also set with `--attack-option KEY=VALUE`.",
        "",
    ]
    for name in ATTACKS.names():
        cls = ATTACKS.get(name).Config
        fields = [f for f in dataclasses.fields(cls) if f.init]
        out += _section(f"[attack.{name}]", _summary(cls), cls, fields, level="###")
    return "\n".join(out) + "\n"


def _is_dataclass_field(owner: type, field: dataclasses.Field[Any]) -> bool:
    return dataclasses.is_dataclass(typing.get_type_hints(owner)[field.name])


def _section(
    title: str, summary: str, cls: type, fields: list[dataclasses.Field[Any]], level: str = "##"
) -> list[str]:
    from feddp_eval.config.fields import attribute_help

    hints = typing.get_type_hints(cls)
    helps = attribute_help(cls)
    rows = [f"{level} `{title}`" if title.startswith("[") else f"{level} {title}", ""]
    if summary:
        rows += [summary, ""]
    rows += ["| setting | type | default | valid | hash | help |", "|---|---|---|---|---|---|"]
    for f in fields:
        rows.append(
            f"| `{f.name}` | {_type_name(hints[f.name])} | {_default(f)} | {_valid(f)} | {_hash_rule(f)} "
            f"| {_cell(helps.get(f.name, ''))} |"
        )
    return [*rows, ""]


def _summary(cls: type) -> str:
    doc = inspect.cleandoc(cls.__doc__ or "")
    return doc.split("\n\n", 1)[0].replace("\n", " ")


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return " \\| ".join(f"`{v!r}`".replace("'", '"') for v in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "`None`"
    if dataclasses.is_dataclass(hint):
        return f"table `{hint.__name__}`"
    if origin is not None:
        return f"`{_plain(hint)}`"
    return f"`{hint.__name__}`"


def _plain(hint: Any) -> str:
    return re.sub(r"\b(typing|builtins)\.", "", str(hint))


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "(required)"
    if dataclasses.is_dataclass(value):
        return "(its table's defaults)"
    return f"`{value!r}`".replace("'", '"')


def _valid(f: dataclasses.Field[Any]) -> str:
    """The declared range and ceiling (``feddp_eval.config.fields.setting``), as the error says them."""
    parts = []
    if (bounds := f.metadata.get("range")) is not None:
        parts.append(bounds.text() + (f" ({bounds.note})" if bounds.note else ""))
    if (most := f.metadata.get("most")) is not None:
        parts.append(f"at most {most[0]:g}" if isinstance(most[0], float) else f"at most {most[0]:,}")
    return _cell(", ".join(parts))


def _hash_rule(f: dataclasses.Field[Any]) -> str:
    rule = f.metadata.get("hash", "")
    if not rule:
        return ""
    only_with = f.metadata.get("only_with")
    return f"`{rule}`" + (f", and out while `{only_with}` is off" if only_with else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
