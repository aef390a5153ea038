"""Is a utility difference larger than seed noise? A paired t interval over seeds (torch-free).

A defended setting and the undefended reference run with the same seeds share
their data, initialisation and batch order, so each seed gives one paired
difference. The relative difference per seed, ``defended / reference - 1``, is
what the tables print (−0.0055 is −0.55% Dice); its mean over seeds gets a
Student-t confidence interval with ``n - 1`` degrees of freedom (the paired t
test, :func:`scipy.stats.ttest_rel` on ``defended / reference`` against 1).

One seed has no spread, so no interval: the verdict is ``"cannot tell"``, and no
number stands in for an interval that does not exist.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Verdict = Literal["lower", "higher", "within noise", "cannot tell"]


@dataclass(frozen=True)
class PairedDelta:
    """Mean relative difference of a defended setting from the reference over paired seeds.

    Attributes:
        seeds: number of paired seeds.
        mean: mean over seeds of ``defended / reference - 1`` (a fraction: -0.01 is -1%).
        low: lower end of the confidence interval of ``mean``; ``None`` with one seed.
        high: upper end; ``None`` with one seed.
        p_value: two-sided paired t test of ``mean == 0``; ``None`` with one seed.
        confidence: level of the interval, e.g. 0.95.
        verdict: ``"lower"`` / ``"higher"`` when the interval excludes 0, ``"within noise"``
            when it holds 0, ``"cannot tell"`` with one seed.
    """

    seeds: int
    mean: float
    low: float | None
    high: float | None
    p_value: float | None
    confidence: float
    verdict: Verdict

    @property
    def distinguishable(self) -> bool:
        """True when the difference is outside seed noise at this confidence."""
        return self.verdict in ("lower", "higher")

    def label(self) -> str:
        """``"-0.55% [-1.20%, +0.10%] within noise"``, or ``"-0.55% (1 seed: cannot tell)"``."""
        if self.low is None or self.high is None:
            return f"{self.mean:+.2%} ({self.seeds} seed: cannot tell)"
        return f"{self.mean:+.2%} [{self.low:+.2%}, {self.high:+.2%}] {self.verdict}"


def paired_relative_delta(
    defended: Sequence[float], reference: Sequence[float], *, confidence: float = 0.95
) -> PairedDelta:
    """Mean relative difference ``defended / reference - 1`` over seeds, with a paired t interval.

    Args:
        defended: one utility value per seed (e.g. pooled Dice), in seed order.
        reference: the undefended run's value for the same seeds, same order; all non-zero.
        confidence: level of the two-sided interval, in (0, 1).

    Returns:
        The mean, its interval and the verdict (see :class:`PairedDelta`).
    """
    ratio = _paired_ratio(defended, reference)
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1), but got {confidence}")
    relative = ratio - 1.0
    seeds, mean = len(relative), float(relative.mean())
    if seeds < 2:
        return PairedDelta(seeds, mean, None, None, None, confidence, "cannot tell")
    spread = float(relative.std(ddof=1))
    if spread == 0.0:  # every seed moved by exactly the same amount: no noise to compare with
        p_value = 1.0 if mean == 0.0 else 0.0
        return PairedDelta(seeds, mean, mean, mean, p_value, confidence, _verdict(mean, mean))
    half_width = float(stats.t.ppf(0.5 + confidence / 2, seeds - 1)) * spread / math.sqrt(seeds)
    low, high = mean - half_width, mean + half_width
    p_value = float(stats.ttest_rel(ratio, np.ones_like(ratio)).pvalue)
    return PairedDelta(seeds, mean, low, high, p_value, confidence, _verdict(low, high))


def _paired_ratio(defended: Sequence[float], reference: Sequence[float]) -> np.ndarray:
    defended_values = np.asarray(defended, dtype=np.float64)
    reference_values = np.asarray(reference, dtype=np.float64)
    if (
        defended_values.ndim != 1
        or defended_values.shape != reference_values.shape
        or not len(defended_values)
    ):
        raise ValueError(
            "`defended` and `reference` must hold one value per seed, in the same seed order, but got "
            f"{len(defended)} and {len(reference)} values; pair the runs by seed"
        )
    if not (np.all(np.isfinite(defended_values)) and np.all(np.isfinite(reference_values))):
        raise ValueError(f"utility values must be finite, but got {list(defended)} and {list(reference)}")
    if np.any(reference_values == 0):
        raise ValueError(
            f"a relative difference needs a non-zero reference, but got {list(reference)}; "
            "compare absolute values for a reference that scored 0"
        )
    return defended_values / reference_values


def _verdict(low: float, high: float) -> Verdict:
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    return "within noise"
