"""Argument checks shared by the data generators."""

from __future__ import annotations

from typing import get_args

import numpy as np

from feddp_eval.config import Difficulty
from feddp_eval.errors import ConfigError


def check_at_least(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"`{name}` must be an integer >= {minimum}, but got {value!r}")


def check_difficulty(difficulty: str) -> None:
    choices = get_args(Difficulty)
    if difficulty not in choices:
        raise ConfigError(
            f"`difficulty` must be one of {', '.join(map(repr, choices))}, but got {difficulty!r}"
        )
