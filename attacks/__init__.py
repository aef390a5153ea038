"""Reconstruction attacks on captured updates; importing the package registers them."""

from attacks import dlg, imprint, inverting_gradients, learned  # noqa: F401
from attacks.base import ATTACKS, Attack, AttackerKnowledge, Reconstruction, ServerView
from attacks.options import option_problems
from feddp_eval.config.validation import use_attack_option_check

use_attack_option_check(option_problems)  # every registered attack now checks its [attack.<name>] table

__all__ = ["ATTACKS", "Attack", "AttackerKnowledge", "Reconstruction", "ServerView"]
