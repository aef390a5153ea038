"""Build the defense a config names, from every built-in defense (composed when it names two).

This module imports the built-in defenses, so that each is registered before a name is looked up;
:mod:`defenses.base`, which they all import, never imports them back.
"""

from __future__ import annotations

from defenses import central_dp, dp_sgd, local_dp, none, prune  # noqa: F401  (registers them)
from defenses.base import DEFENSES, Defense, GaussianDefense
from defenses.compose import compose
from feddp_eval.config import DefenseConfig


def noise_defenses() -> list[str]:
    """The registered defenses with a noise multiplier σ to sweep (Gaussian mechanisms)."""
    return [name for name in DEFENSES.names() if issubclass(DEFENSES.get(name), GaussianDefense)]


def build_defense(config: DefenseConfig) -> Defense:
    """The defense ``config`` names, validated and ready to hook into training.

    With a ``[defense.server]`` table, the client-side defense ``config.name`` composed with the
    server-side one it names.
    """
    first = DEFENSES.create(config.name, config)
    if config.server is None:
        return first
    return compose(first, DEFENSES.create(config.server.name, config.server))
