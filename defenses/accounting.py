"""Privacy accounting: pure functions over Opacus' accountants, used by every DP defense.

A history is a list of ``(noise_multiplier, sample_rate, steps)`` entries, the
same form Opacus' accountants keep. With a zero noise multiplier anywhere the
guarantee is void and ε is infinite.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from feddp_eval.errors import ConfigError

AccountantName = Literal["rdp", "prv"]
History = Sequence[tuple[float, float, int]]


def epsilon(history: History, *, delta: float, accountant: AccountantName = "rdp") -> float:
    """ε spent by a composition of subsampled Gaussian mechanisms at this δ.

    Args:
        history: ``(noise_multiplier, sample_rate, steps)`` per phase.
        delta: Target δ in (0, 1).
        accountant: ``rdp`` (Rényi DP, Mironov et al.) or ``prv`` (privacy random variables).
    """
    entries = [(float(s), float(q), int(k)) for s, q, k in history if k > 0]
    if not entries:
        return 0.0
    if any(s <= 0 for s, _, _ in entries):
        return math.inf
    engine = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    engine.history = entries
    with warnings.catch_warnings():
        # At tiny σ (≲ 0.05) the best RDP order lies below Opacus' smallest (1.1) and it warns that
        # the bound could be tighter. The ε is still a valid upper bound, and at that σ it is
        # astronomically large (≥ 10³) whichever order is used.
        warnings.filterwarnings("ignore", message="Optimal order is the smallest alpha")
        # At huge σ the best order lies above the largest; the ε is still a valid (tiny) upper bound.
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        try:
            spent = float(engine.get_epsilon(delta=delta))
        except (ZeroDivisionError, OverflowError, FloatingPointError):
            # σ so small (≲ 1e-150) that the accountant's arithmetic breaks: no guarantee is left.
            return math.inf
    return spent if not math.isnan(spent) else math.inf


def calibrate_noise(
    target_epsilon: float, *, delta: float, sample_rate: float, steps: int, accountant: AccountantName = "rdp"
) -> float:
    """Smallest noise multiplier (to Opacus' tolerance) keeping ``steps`` steps within ``target_epsilon``."""
    try:
        with warnings.catch_warnings():  # the search probes σ far beyond the orders' range; see epsilon()
            warnings.filterwarnings("ignore", message="Optimal order is the (smallest|largest) alpha")
            sigma = get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=accountant,
            )
    except (ValueError, ZeroDivisionError, OverflowError) as exc:
        raise ConfigError(
            f"`target_epsilon` {target_epsilon} cannot be reached over {steps} steps at sampling rate "
            f"{sample_rate:.4g} ({exc}); raise it or train for fewer steps"
        ) from None
    return float(sigma)
