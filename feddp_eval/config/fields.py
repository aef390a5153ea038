"""How a setting is declared: its default, the range it must lie in, the ceiling a run can use, and
how it enters the config hash, all in the field's metadata, in one place.

Every section of :mod:`~feddp_eval.config.sections` declares its fields with :func:`setting`; the
one validation pass (:func:`range_problems`, :func:`ceiling_problems`), the configuration
reference (``docs/hooks/generated_pages.py``) and the config hash
(:func:`~feddp_eval.config.loading.config_hash`) read that metadata instead of restating it. A
setting's help is the ``Attributes:`` entry of its section's docstring (:func:`setting_help`), which
the API reference, the configuration reference and the command-line help all show. What ties two
settings together (``tile_size`` divisible by ``2**depth``) stays a written check in
:mod:`~feddp_eval.config.validation`.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

ADDED: Final = {"hash": "omit-default"}
"""Field metadata of a setting added after config hashes were first published: left at its
default it stays out of the hash, so existing runs and sweep points keep their hashes."""


@dataclass(frozen=True)
class Range:
    """The values a number setting may take: bounds (each closed, open or absent) and what the
    special values mean.

    Attributes:
        ge, gt: Lower bound, inclusive (``>=``) or exclusive (``>``); ``None``: no lower bound.
        le, lt: Upper bound, inclusive (``<=``) or exclusive (``<``); ``None``: no upper bound.
        note: Said after the range in the error (``0 = use epochs``).
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    note: str = ""

    def holds(self, value: float) -> bool:
        """Whether ``value`` lies in the range (a NaN never does)."""
        return not (
            math.isnan(value)
            or (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )

    def text(self) -> str:
        """``>= 1``, ``> 0``, ``in (0, 1]``: the range as the error and the reference write it."""
        low = self.ge if self.ge is not None else self.gt
        high = self.le if self.le is not None else self.lt
        if low is not None and high is not None:
            return (
                f"in {'[' if self.ge is not None else '('}{low}, {high}{']' if self.le is not None else ')'}"
            )
        if low is not None:
            return f"{'>=' if self.ge is not None else '>'} {low}"
        if high is not None:
            return f"{'<=' if self.le is not None else '<'} {high}"
        return "any number"

    def problem(self, key: str, value: Any) -> str:
        """The error for ``value`` of setting ``key`` (dotted), out of range."""
        note = f" ({self.note})" if self.note else ""
        return f"`{key}` must be {self.text()}{note}, but got {value}"


def setting(
    default: Any = dataclasses.MISSING,
    *,
    default_factory: Any = dataclasses.MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    note: str = "",
    most: float | None = None,
    most_note: str = "",
    added: bool = False,
    only_with: str | None = None,
    acts_when: tuple[str, tuple[str, ...]] | None = None,
    published: Any = None,
) -> Any:
    """A config field with its rules in the metadata.

    Args:
        default, default_factory: As for :func:`dataclasses.field`.
        ge, gt, le, lt, note: Its valid :class:`Range` (a number; ``None`` and non-numbers pass).
            Each item of a tuple setting is checked. Float settings must be finite whatever the range.
        most, most_note: The largest magnitude that still describes a run this toolkit can finish (far
            beyond any real experiment, far below where arithmetic overflows or memory runs out),
            and why: a hostile value is refused before anything is allocated.
        added: The setting was added after config hashes were first published: left at its default
            it stays out of the hash (:data:`ADDED`).
        only_with: With ``added``: the boolean field of the same section the setting only matters
            under; while that is off the setting stays out of the hash whatever its value.
        acts_when, published: ``(field, values)``: the setting only acts while that field of the same
            section holds one of ``values``; elsewhere the hash holds ``published``, the value every
            hash was first published with, whatever the setting says. Its default can then change
            for the runs it acts in without moving any other run's hash.
    """
    metadata: dict[str, Any] = {}
    if any(bound is not None for bound in (ge, gt, le, lt)):
        metadata["range"] = Range(ge=ge, gt=gt, le=le, lt=lt, note=note)
    if most is not None:
        metadata["most"] = (most, most_note)
    if added or only_with:
        metadata |= ADDED
    if only_with:
        metadata["only_with"] = only_with
    if acts_when:
        metadata["acts_when"] = (acts_when[0], tuple(acts_when[1]), published)
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def settings(config: Any, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field[Any], Any]]:
    """(dotted key, field, value) of every setting of a config dataclass, nested sections walked
    (a section left empty, such as ``defense.server``, is skipped)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from settings(value, f"{key}.")
        else:
            yield key, f, value


def _numbers(value: Any) -> list[int | float]:
    items = value if isinstance(value, tuple | list) else (value,)
    return [v for v in items if isinstance(v, int | float) and not isinstance(v, bool)]


def ceiling_problems(config: Any) -> list[str]:
    """Every number of ``config`` that is not finite, or beyond its setting's ceiling (``most``)."""
    problems: list[str] = []
    for key, f, value in settings(config):
        for number in _numbers(value):
            if isinstance(number, float) and not math.isfinite(number):
                problems.append(f"`{key}` must be a finite number, but got {number}")
                break
            most, why = f.metadata.get("most", (None, ""))
            if most is not None and abs(number) > most:
                because = f" ({why})" if why else ""
                shown = (
                    f"{most:g}{because}, but got {number:g}"
                    if isinstance(number, float)
                    else f"{most}, but got {number}"
                )
                problems.append(f"`{key}` must be at most {shown}")
                break
    return problems


def range_problems(config: Any) -> list[str]:
    """Every finite number of ``config`` outside its setting's declared :class:`Range`."""
    problems: list[str] = []
    for key, f, value in settings(config):
        bounds: Range | None = f.metadata.get("range")
        if bounds is None:
            continue
        # A non-finite float is named by ceiling_problems; a tuple's items are checked each.
        if any(math.isfinite(n) and not bounds.holds(n) for n in _numbers(value)):
            problems.append(bounds.problem(key, value))
    return problems


def ceiling(root: type, key: str) -> Any:
    """The declared ceiling (``most``, an int or a float as declared) of the dotted setting ``key``
    under ``root``; a ``KeyError`` for a setting that declares none."""
    cls, name = section_of(root, key)
    return {f.name: f for f in dataclasses.fields(cls)}[name].metadata["most"][0]


@cache
def attribute_help(cls: type) -> dict[str, str]:
    """``name → help`` of the Google-style ``Attributes:`` block of ``cls``'s docstring, continuation
    lines joined; an entry ``a, b: text`` gives both names the text."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    found = re.search(r"^Attributes:\n((?:[ \t]+.*\n?|\n)*)", doc, re.M)
    helps: dict[str, str] = {}
    current: list[str] = []
    for line in (found.group(1) if found else "").splitlines():
        entry = re.match(r"^ {4}(\w+(?:, \w+)*): (.*)$", line)
        if entry:
            current = entry.group(1).split(", ")
            helps.update(dict.fromkeys(current, entry.group(2)))
        elif current and line.strip():
            for name in current:
                helps[name] += " " + line.strip()
    return helps


def section_of(root: type, key: str) -> tuple[type, str]:
    """The dataclass that declares the dotted setting ``key`` under ``root``, and the field's name."""
    *path, name = key.split(".")
    cls = root
    for part in path:
        hint = typing.get_type_hints(cls)[part]
        options: list[type] = [a for a in typing.get_args(hint) if isinstance(a, type)] or [hint]
        cls = next((a for a in options if dataclasses.is_dataclass(a)), options[0])
    if name not in {f.name for f in dataclasses.fields(cls)}:
        raise KeyError(f"{cls.__name__} has no setting {name!r}")
    return cls, name


def setting_help(root: type, key: str) -> str:
    """The help of the dotted setting ``key`` (its docstring entry) as the command line shows it:
    reST literals in single backticks (a quoted literal bare), cross-references as their text."""
    cls, name = section_of(root, key)
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", attribute_help(cls).get(name, ""))
    return re.sub(r"``([^`]+)``", lambda m: m[1] if m[1][0] in "\"'" else f"`{m[1]}`", text)
