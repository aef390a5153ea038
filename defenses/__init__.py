"""Defenses against update leakage; importing the package registers the built-in ones."""

from defenses import central_dp, dp_sgd, local_dp, none, prune  # noqa: F401
from defenses.base import DEFENSES, Defense, build_defense, noise_defenses

__all__ = ["DEFENSES", "Defense", "build_defense", "noise_defenses"]
