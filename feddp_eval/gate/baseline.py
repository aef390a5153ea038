"""Baseline files of the leakage gate: their format, parsing (:func:`load_baseline`) and writing.

A baseline names a scenario (an experiment TOML, inline or by path) and bounds per
arm, the arm being the defense name of a result row::

    scenario = "scenario.toml"        # relative to this file; or an inline [scenario] table

    [arms.none]
    psnr_min = 19.0                   # the attack must still work on the undefended arm
    dice_min = 0.7

    [arms.dp-sgd]
    psnr_max = 18.5
    ssim_max = { value = 0.45, tolerance = 0.02 }
    epsilon_max = 20.0

An arm named ``<attack>/<defense>`` (``[arms."imprint/dp-sgd"]``) checks that attack's row
instead of the scenario's own attack; the gate runs every attack its arms name, each on its
own training runs (a malicious server's ``imprint`` changes the model it sends)::

    [arms."imprint/none"]
    tiles_exact_min = 3               # the malicious server reads the tiles when nothing defends them

    [arms."imprint/dp-sgd"]
    margin_psnr_max = 1.0             # DP-SGD keeps it within 1 dB of the mean-colour guess

A bound ``<metric>_min`` holds when value >= bound − tolerance, ``<metric>_max`` when
value <= bound + tolerance. The metrics, and their default tolerances (what a re-run on another
CPU may plausibly move), are the gate metrics of :mod:`feddp_eval.schema`. Unknown keys,
metrics or arms are errors (exit 2).

A scenario trained with the audit on (``[train] audit = true``) is also held, on every arm with a
claimed ε, to the one-run audit's ε̂ ≤ ε (:func:`~feddp_eval.gate.verdicts.audit_verdicts`): a
built-in bound, no baseline key needed; ``epsilon_lower_bound_max`` / ``_min`` bound ε̂ like any
other gate metric.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feddp_eval import schema
from feddp_eval.config import read_toml
from feddp_eval.errors import ConfigError


@dataclass(frozen=True)
class Bound:
    """One bound of one arm: ``metric`` must be at least (``min``) or at most (``max``) ``value``."""

    arm: str
    metric: str
    kind: str  # "min" or "max"
    value: float
    tolerance: float

    @property
    def name(self) -> str:
        return f"{self.arm}.{self.metric}_{self.kind}"


@dataclass(frozen=True)
class Baseline:
    """A parsed baseline file: the scenario (as a raw experiment table) and its bounds."""

    path: Path
    scenario: dict[str, Any]
    bounds: list[Bound]


def load_baseline(path: str | Path) -> Baseline:
    """Parse and validate a baseline TOML file, reporting every problem at once."""
    path = Path(path)
    raw = read_toml(path, what="baseline file")
    problems: list[str] = []
    for key in sorted(set(raw) - {"scenario", "arms"}):
        problems.append(f"unknown key `{key}`; a baseline has `scenario` and `[arms.<defense>]` tables")
    scenario = _scenario(raw.get("scenario", {}), path, problems)
    arms = raw.get("arms")
    if not isinstance(arms, Mapping) or not arms:
        problems.append("no `[arms.<defense>]` table: name at least one arm and its bounds")
        arms = {}
    bounds = [b for arm, table in arms.items() for b in _bounds(arm, table, problems)]
    if problems:
        raise ConfigError(problems, source=str(path))
    return Baseline(path, scenario, bounds)


def _scenario(value: Any, path: Path, problems: list[str]) -> dict[str, Any]:
    if isinstance(value, str):
        file = (path.parent / value).resolve()
        try:
            if not file.is_file():  # a folder or a device (/dev/zero) would hang or fail obscurely
                raise OSError(f"{file} is not a regular file")
            return tomllib.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            problems.append(f"`scenario` file {value!r} cannot be read ({exc})")
            return {}
    if isinstance(value, Mapping):
        return dict(value)
    problems.append(f"`scenario` must be a path or a table, but got {value!r}")
    return {}


def _bounds(arm: str, table: Any, problems: list[str]) -> list[Bound]:
    if not isinstance(table, Mapping):
        problems.append(f"`arms.{arm}` must be a table of bounds, but got {table!r}")
        return []
    found = []
    for key, spec in table.items():
        metric, _, kind = key.rpartition("_")
        if kind not in ("min", "max") or metric not in schema.gate_metrics():
            problems.append(
                f"unknown bound `arms.{arm}.{key}`; use <metric>_min or <metric>_max with a metric "
                f"in {', '.join(schema.gate_metrics())}"
            )
            continue
        value, tolerance = spec, schema.default_tolerance(metric)
        if isinstance(spec, Mapping):
            extra = sorted(set(spec) - {"value", "tolerance"})
            if extra:
                problems.append(f"unknown keys {extra} in `arms.{arm}.{key}`; use value and tolerance")
            value, tolerance = spec.get("value"), spec.get("tolerance", tolerance)
        if not _number(value) or not _number(tolerance) or tolerance < 0:
            problems.append(f"`arms.{arm}.{key}` needs a number (and a tolerance >= 0), but got {spec!r}")
            continue
        found.append(Bound(arm, metric, kind, float(value), float(tolerance)))
    return found


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def write_baseline(
    repeats: Sequence[Sequence[Mapping[str, Any]]],
    *,
    scenario: str,
    margins: Mapping[str, float],
    labels: Sequence[str] = (),
) -> str:
    """Baseline TOML from the rows of one or more runs of a scenario (``repeats``: one list of rows per run,
    e.g. per seed and thread count): leakage capped above (defended arms) or floored below (the undefended
    arm, so a broken attack fails), utility floored, ε capped.

    Each bound sits beyond the worst repeat by ``max(margin, spread)``, the spread being the range of that
    value over the repeats: a bound is never inside what the repeats themselves measured. The range is
    written beside each bound. ``labels`` name the repeats in the file's header.
    """
    arms: dict[str, list[Mapping[str, Any]]] = {}
    for rows in repeats:
        for row in rows:
            arms.setdefault(str(row["defense"]), []).append(row)
    lines = [
        "# Written by `feddp-eval check --write-baseline` from "
        + (f"{len(repeats)} runs ({'; '.join(labels)})" if labels else f"{len(repeats)} run(s)")
        + "; each bound sits max(margin, spread over the runs)",
        "# beyond the worst run. Edit the bounds as policy.",
        f"scenario = {_quote(scenario)}",
        "",
    ]
    for arm, rows in arms.items():
        lines.append(f"[arms.{arm}]")
        wanted = [("psnr", "min"), ("ssim", "min")] if arm == "none" else [("psnr", "max"), ("ssim", "max")]
        if arm != "none" and all(r.get("lpips") is not None for r in rows):
            wanted.append(("lpips", "min"))
        wanted.append(("dice", "min"))
        for metric, kind in wanted:
            values = [float(r[metric]) for r in rows]
            low, high = min(values), max(values)
            step = max(margins[metric], high - low)
            bound = low - step if kind == "min" else high + step
            spread = f"{len(values)} run(s): {low:.4g}–{high:.4g}, margin {step:.3g}"
            lines.append(f"{metric}_{kind} = {bound:.6g}  # {spread}")
        epsilons = [float(e) if (e := r.get("epsilon")) is not None else math.inf for r in rows]
        if all(math.isfinite(e) for e in epsilons):
            lines.append(f"epsilon_max = {max(epsilons) * 1.001:.6g}  # the accountant's ε, deterministic")
        lines.append("")
    return "\n".join(lines)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
