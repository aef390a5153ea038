"""Reconstruction attacks on captured updates; importing the package registers them."""

from attacks import dlg, imprint, inverting_gradients  # noqa: F401
from attacks.base import ATTACKS, Attack, AttackerKnowledge, Reconstruction, ServerView

__all__ = ["ATTACKS", "Attack", "AttackerKnowledge", "Reconstruction", "ServerView"]
