"""Hypothesis: experiment TOML documents of valid structure and hostile values never end in a
traceback; they load, or raise one :class:`~feddp_eval.errors.ConfigError` naming the settings."""

from __future__ import annotations

import dataclasses
import math
import tempfile
import typing
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feddp_eval.config import ExperimentConfig, load_config
from feddp_eval.errors import ConfigError

SECTIONS = {
    f.name: [g.name for g in dataclasses.fields(typing.get_type_hints(ExperimentConfig)[f.name])]
    for f in dataclasses.fields(ExperimentConfig)
    if dataclasses.is_dataclass(typing.get_type_hints(ExperimentConfig)[f.name])
}
TOP = [f.name for f in dataclasses.fields(ExperimentConfig) if f.name not in SECTIONS]

hostile_float = st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300, 5e-324, -0.0, 1e-300])
hostile_int = st.sampled_from([0, -1, -(2**63), 2**63 - 1, 10**12, 2**31])
scalar = st.one_of(
    hostile_float,
    hostile_int,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(["synthetic", "/dev/zero", "..", "dp-sgd", "nope", "auto", "cuda", ""]),
)
value = st.one_of(scalar, st.lists(scalar, max_size=4))


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """A document with the real section and key names (and now and then an unknown one)."""
    doc: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(TOP), max_size=3, unique=True)):
        doc[key] = draw(value)
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=5, unique=True)):
        keys = SECTIONS[section] + ["unknown_key"]
        doc[section] = {
            k: draw(value) for k in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True))
        }
    return doc


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return (
            '"'
            + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in value)
            + '"'
        )
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def render(doc: dict[str, Any]) -> str:
    lines = [f"{k} = {_toml(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for section, table in doc.items():
        if isinstance(table, dict):
            lines += [f"[{section}]", *(f"{k} = {_toml(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_hostile_documents_load_or_fail_with_config_error(doc: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "exp.toml"
        path.write_text(render(doc), encoding="utf-8")
        try:
            config = load_config(path)
        except ConfigError as exc:
            assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
            assert str(path) in str(exc)
            return
    # What loads is runnable: every number finite and within range.
    from feddp_eval.config.validation import setting_problems

    assert setting_problems(config) == []
    assert math.isfinite(config.defense.noise) and math.isfinite(config.defense.clip)


SWEEP_KEYS = ["noises", "defenses", "attacks", "seeds", "targets", "unknown_key"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.dictionaries(st.sampled_from(SWEEP_KEYS), value, max_size=4))
def test_hostile_sweep_tables_load_or_fail_with_config_error(
    doc: dict[str, Any], sweep: dict[str, Any]
) -> None:
    from attacks import ATTACKS
    from defenses import DEFENSES, noise_defenses
    from feddp_eval.sweep import load_sweep_config, validate_spec

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sweep.toml"
        path.write_text(render({**doc, "sweep": sweep}), encoding="utf-8")
        try:
            _, spec = load_sweep_config(path)
            validate_spec(
                spec, defenses=DEFENSES.names(), attacks=ATTACKS.names(), noise_defenses=noise_defenses()
            )
        except ConfigError as exc:
            assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
