"""Scoring canaries from the server's view and turning the guesses into ε̂.

A canary's score is how far the client's released updates, summed over every round it took
part in, moved its coordinate in the canary's direction: ``−sign · ΣΔ[coordinate]`` for a
gradient canary (a step moves the weights against the gradient), ``+sign · ΣΔ[coordinate]``
for an update canary. Each client's sums are divided by their robust spread over all
coordinates (1.4826 · MAD, which the few canary coordinates barely move), so clients with
larger updates do not crowd the ranking. Only captures and the public design are read; the
membership is read afterwards, to count the correct guesses.

The auditor guesses "in" for the top r/2 scores and "out" for the bottom r/2, for each r on a
grid fixed in advance (m/8, m/4, m/2, m), and keeps the largest ε̂, each tried at confidence
1 − β/4 so that the kept one holds at 1 − β (see :func:`feddp_eval.metrics.audit.audit_grid`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from feddp_eval.audit.canaries import GRADIENT, NOT_APPLICABLE, Canary, read_design, read_membership
from feddp_eval.federated.capture import list_captures
from feddp_eval.metrics.audit import AuditResult, audit_grid, guess_counts


@dataclass(frozen=True)
class RunAudit:
    """A run's audit next to its accountant's ε.

    Attributes:
        level: Where the canaries entered: ``gradient``, ``update`` or ``not-applicable``.
        reason: Why that level (or why the audit does not apply).
        epsilon: The accountant's ε (``None``: the defense claims no guarantee).
        granularity: The guarantee's unit (``sample-level``, ``client-level``, ``none``).
        result: ε̂ with its guesses, correct guesses, m, δ and confidence; ``None`` when not applicable.
    """

    level: str
    reason: str
    epsilon: float | None
    granularity: str
    result: AuditResult | None

    @property
    def epsilon_lower_bound(self) -> float | None:
        return self.result.epsilon if self.result else None

    @property
    def violated(self) -> bool:
        """ε̂ > ε: the run leaked more than its accountant allows — a DP bug, not bad luck (at the
        audit's confidence)."""
        bound = self.epsilon_lower_bound
        return bound is not None and self.epsilon is not None and bound > self.epsilon

    def to_dict(self) -> dict[str, Any]:
        """The fields for ``privacy.json`` (key ``audit``) and results rows."""
        r = self.result
        return {
            "epsilon_lower_bound": r.epsilon if r else None,
            "guesses": r.guesses if r else None,
            "correct": r.correct if r else None,
            "canaries": r.canaries if r else None,
            "confidence": r.confidence if r else None,
            "delta": r.delta if r else None,
            "level": self.level,
            "reason": self.reason,
            "epsilon": self.epsilon,
            "granularity": self.granularity,
            "violated": self.violated,
        }

    def describe(self) -> str:
        """One line: ``ε̂ = 1.83 (95% confidence, 50/50 correct, m = 100, δ = 1e-05) ≤ ε = 8.1``."""
        r = self.result
        if r is None:
            return f"audit not applicable: {self.reason}"
        line = (
            f"ε̂ = {r.epsilon:.3g} ({r.confidence:.0%} confidence, {r.correct}/{r.guesses} correct, "
            f"m = {r.canaries}, δ = {r.delta:g})"
        )
        if self.epsilon is None:
            return line + "; no claimed ε to compare"
        return (
            line
            + (" > " if self.violated else " ≤ ")
            + f"ε = {self.epsilon:.3g}"
            + (": the run leaks more than its accountant allows (a DP bug)" if self.violated else "")
        )


def canary_scores(run_dir: str | Path, canaries: list[Canary], *, level: str) -> list[float]:
    """Each canary's score from its client's captured updates (see the module docstring)."""
    sums: dict[int, dict[str, Tensor]] = defaultdict(dict)
    for capture in list_captures(run_dir):
        total = sums[capture.site_index]
        for name, tensor in capture.load_update().items():
            total[name] = total[name] + tensor.double() if name in total else tensor.double()
    direction = -1.0 if level == GRADIENT else 1.0
    scales = {client: _spread(total) for client, total in sums.items()}
    scores = []
    for c in canaries:
        total = sums.get(c.client, {})
        if c.parameter not in total:  # the client never took part: no evidence either way
            scores.append(0.0)
            continue
        value = float(total[c.parameter].reshape(-1)[c.index])
        scores.append(direction * c.sign * value / scales[c.client])
    return scores


def _spread(update: dict[str, Tensor]) -> float:
    """1.4826 · median absolute deviation of every coordinate (the std of a Gaussian bulk)."""
    flat = torch.cat([t.reshape(-1) for _, t in sorted(update.items())])
    spread = 1.4826 * float((flat - flat.median()).abs().median())
    return spread if spread > 0 else 1.0


def audit_run(run_dir: str | Path, *, confidence: float = 0.95) -> RunAudit:
    """Audit a finished run trained with the audit on: ε̂ from its captures and recorded canaries.

    Raises:
        RunDirError: The run has no audit record or captures.
    """
    design, canaries = read_design(run_dir)
    epsilon, granularity = design.get("epsilon"), str(design.get("granularity", "none"))
    level, reason = str(design["level"]), str(design.get("reason", ""))
    if level == NOT_APPLICABLE:
        return RunAudit(level, reason, epsilon, granularity, None)
    members = read_membership(run_dir, len(canaries))
    scores = canary_scores(run_dir, canaries, level=level)
    result = audit_grid(
        scores,
        members,
        counts=guess_counts(len(canaries)),
        delta=float(design["delta"]),
        confidence=confidence,
    )
    return RunAudit(level, reason, epsilon, granularity, result)
