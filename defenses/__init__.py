"""Defenses against update leakage; importing the package registers the built-in ones."""

from defenses.base import DEFENSES, Defense
from defenses.build import build_defense, noise_defenses

__all__ = ["DEFENSES", "Defense", "build_defense", "noise_defenses"]
