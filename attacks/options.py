"""The check of each ``[attack.<name>]`` table against that attack's own ``Config``.

The config layer runs it inside :func:`feddp_eval.config.validate` (every problem at once); the
``attacks`` package installs it there when it is loaded.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from attacks.base import ATTACKS
from feddp_eval.config import AttackSettings, from_dict
from feddp_eval.config.validation import SHARED_ATTACK_SETTINGS
from feddp_eval.errors import ConfigError


def option_problems(a: AttackSettings) -> list[str]:
    """Check each ``[attack.<name>]`` table against that attack's ``Config``: unknown attacks, unknown
    keys (listing the known ones), settings ``[attack]`` owns, bad types and ranges."""
    problems: list[str] = []
    for name, table in a.options.items():
        try:
            attack = ATTACKS.get(name)
        except ConfigError:
            problems.append(f"`[attack.{name}]` names no attack; known attacks: {', '.join(ATTACKS.names())}")
            continue
        problems += _option_table_problems(name, attack.Config, table)
    return problems


def _option_table_problems(name: str, config_class: Any, table: dict[str, Any]) -> list[str]:
    own = sorted(f.name for f in fields(config_class) if f.name not in SHARED_ATTACK_SETTINGS)
    shared = sorted(set(table) & SHARED_ATTACK_SETTINGS)
    problems = [f"`attack.{name}.{key}`: set `attack.{key}` in [attack] instead" for key in shared]
    unknown = sorted(set(table) - set(own) - SHARED_ATTACK_SETTINGS)
    if unknown:
        problems.append(f"unknown {name} settings {unknown} in `[attack.{name}]`; known: {', '.join(own)}")
    if problems:
        return problems
    try:
        from_dict(config_class, table, where=f"attack.{name}")  # types, then the Config's own range checks
    except ConfigError as exc:
        return list(exc.problems)
    return []
