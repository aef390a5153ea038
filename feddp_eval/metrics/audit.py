"""The one-run privacy audit's ε lower bound (Steinke, Nasr, Jagielski, NeurIPS 2023).

m canaries are each included in training independently with probability ½. After
training, an auditor guesses "in" for some canaries and "out" for others
(abstaining on the rest): r guesses, v of them correct. If the training run is
(ε, δ)-DP with respect to each canary, the number of correct guesses is dominated
by a Binomial(r, e^ε / (1 + e^ε)) — ε-DP randomized response — plus a δ term
(their Theorem 5.2 / Algorithm 2). The audit's ε̂ is the largest ε that this
observation rejects at the given confidence: the code's true ε is at least ε̂.

Pure functions; no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def p_value(m: int, r: int, v: int, *, epsilon: float, delta: float) -> float:
    """Probability of at least ``v`` correct guesses out of ``r`` under an (ε, δ)-DP null hypothesis.

    Args:
        m: Canaries, each included independently with probability ½.
        r: Guesses made (abstentions excluded).
        v: Correct guesses.
        epsilon: ε of the null hypothesis (>= 0).
        delta: δ of the null hypothesis, in [0, 1].
    """
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= v <= r <= m, but got v={v}, r={r}, m={m}")
    if epsilon < 0 or not 0 <= delta <= 1:
        raise ValueError(f"need epsilon >= 0 and delta in [0, 1], but got {epsilon}, {delta}")
    q = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of ε-DP randomized response
    tail = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    # δ's share: the largest average mass of the i values just below v (Theorem 5.2's α).
    alpha = 0.0
    if v > 0 and delta > 0:
        i = np.arange(1, v + 1)
        alpha = float(np.max(np.cumsum(stats.binom.pmf(v - i, r, q)) / i))
    return min(1.0, tail + alpha * delta * 2 * m)


def epsilon_lower_bound(
    m: int, r: int, v: int, *, delta: float, confidence: float = 0.95, precision: float = 1e-4
) -> float:
    """The largest ε rejected at ``confidence`` by ``v`` correct out of ``r`` guesses (0 if none is).

    ``p_value`` grows with ε, so the rejected ε form an interval [0, ε̂); bisection finds ε̂.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1), but got {confidence}")
    level = 1.0 - confidence
    if p_value(m, r, v, epsilon=0.0, delta=delta) > level:
        return 0.0
    low, high = 0.0, 1.0
    while p_value(m, r, v, epsilon=high, delta=delta) <= level:
        low, high = high, 2 * high
        if high > 1e3:  # r perfect guesses can never reject more than about log(1/level)·… : safety
            return low
    while high - low > precision:
        middle = (low + high) / 2
        if p_value(m, r, v, epsilon=middle, delta=delta) <= level:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class AuditResult:
    """An audit's outcome, as recorded beside the accountant's ε.

    Attributes:
        epsilon: ε̂, the empirical lower bound.
        canaries: m, the canaries (each in with probability ½).
        guesses: r, guesses made ("in" for the highest scores, "out" for the lowest).
        correct: v, correct guesses.
        delta: δ the bound was computed at (the run's δ).
        confidence: Confidence level of the bound.
    """

    epsilon: float
    canaries: int
    guesses: int
    correct: int
    delta: float
    confidence: float

    def to_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def audit(
    scores: Sequence[float],
    members: Sequence[bool],
    *,
    guesses: int,
    delta: float,
    confidence: float = 0.95,
) -> AuditResult:
    """Guess "in" for the ``guesses // 2`` highest scores and "out" for as many lowest, then bound ε.

    The number of guesses is fixed before looking at the scores (choosing it afterwards from
    several tries would spend confidence).

    Args:
        scores: One membership score per canary (higher: more likely trained on).
        members: Whether each canary was in fact included.
        guesses: r, even, at most the number of canaries.
        delta: δ of the run.
        confidence: Confidence level of the bound.
    """
    m = len(scores)
    if len(members) != m:
        raise ValueError(f"{m} scores but {len(members)} membership flags")
    if guesses < 2 or guesses > m or guesses % 2:
        raise ValueError(f"`guesses` must be even and in [2, {m}], but got {guesses}")
    order = sorted(range(m), key=lambda i: (scores[i], i))
    half = guesses // 2
    correct = sum(1 for i in order[-half:] if members[i]) + sum(1 for i in order[:half] if not members[i])
    bound = epsilon_lower_bound(m, guesses, correct, delta=delta, confidence=confidence)
    return AuditResult(bound, m, guesses, correct, delta, confidence)


def guess_counts(m: int, *, fractions: Sequence[float] = (0.125, 0.25, 0.5, 0.9)) -> list[int]:
    """The fixed grid of guess counts r an audit of ``m`` canaries tries: even, ≥ 2, ≤ m, distinct.

    Fixed before any score is seen; :func:`audit_grid` pays for trying several (Bonferroni).
    """
    counts = sorted({min(m - m % 2, max(2, 2 * round(f * m / 2))) for f in fractions})
    return [r for r in counts if 2 <= r <= m]


def audit_grid(
    scores: Sequence[float],
    members: Sequence[bool],
    *,
    counts: Sequence[int],
    delta: float,
    confidence: float = 0.95,
) -> AuditResult:
    """The best :func:`audit` over a fixed grid of guess counts, still valid at ``confidence``.

    Each count is audited at confidence ``1 − (1 − confidence) / len(counts)`` (a union bound over
    the grid), so the largest of the bounds is a lower bound on ε at ``confidence``: trying a few
    counts costs a little confidence per count instead of invalidating the bound. The returned
    result names the count that gave the largest bound and the overall ``confidence``.
    """
    if not counts:
        raise ValueError("`counts` must name at least one guess count")
    each = 1.0 - (1.0 - confidence) / len(counts)
    results = [audit(scores, members, guesses=r, delta=delta, confidence=each) for r in counts]
    best = max(results, key=lambda a: (a.epsilon, a.correct / a.guesses))
    return AuditResult(best.epsilon, best.canaries, best.guesses, best.correct, delta, confidence)
