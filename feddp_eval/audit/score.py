"""Scoring canaries from the server's view and turning the guesses into ε̂.

A canary's score is how far the client's released updates, summed over every round it took
part in, moved its coordinate in the canary's direction: ``−sign · ΣΔ[coordinate]`` for a
gradient canary (a step moves the weights against the gradient), ``+sign · ΣΔ[coordinate]``
for an update canary. Each client's sums are divided by their robust spread over all
coordinates (1.4826 · MAD, which the few canary coordinates barely move), so clients with
larger updates do not crowd the ranking. Only captures and the public design are read; the
membership is read afterwards, to count the correct guesses.

The auditor guesses "in" for the top r/2 scores and "out" for the bottom r/2, for each r on a
grid fixed in advance (m/8, m/4, m/2, 0.9·m; r = m would be perfect only when exactly m/2
are members), and keeps the largest ε̂, each tried at confidence
1 − β/4 so that the kept one holds at 1 − β (see :func:`feddp_eval.metrics.audit.audit_grid`).
Clients whose accountants claim different ε are audited apart, each against its own ε, with β
shared among them (:func:`audit_run`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from feddp_eval.audit.canaries import GRADIENT, NOT_APPLICABLE, Canary, read_design, read_membership
from feddp_eval.federated.capture import list_captures
from feddp_eval.metrics.audit import AuditResult, audit_grid, guess_counts


@dataclass(frozen=True)
class GroupAudit:
    """The audit of the canaries of clients that share one accountant ε.

    Attributes:
        clients: Client indices whose canaries were pooled.
        epsilon: Their accountant's ε (``None``: no guarantee).
        result: ε̂ of these canaries (its ``confidence`` is the whole audit's; see :func:`audit_run`).
    """

    clients: tuple[int, ...]
    epsilon: float | None
    result: AuditResult

    @property
    def violated(self) -> bool:
        return self.epsilon is not None and self.result.epsilon > self.epsilon

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "clients": list(self.clients),
            "epsilon": self.epsilon,
            "epsilon_lower_bound": r.epsilon,
            "guesses": r.guesses,
            "correct": r.correct,
            "canaries": r.canaries,
            "violated": self.violated,
        }


@dataclass(frozen=True)
class RunAudit:
    """A run's audit next to its accountant's ε.

    Attributes:
        level: Where the canaries entered: ``gradient``, ``update`` or ``not-applicable``.
        reason: Why that level (or why the audit does not apply).
        epsilon: The accountant's headline ε, the largest over clients (``None``: no guarantee).
        granularity: The guarantee's unit (``sample-level``, ``client-level``, ``none``).
        groups: One audit per set of clients sharing an ε; empty when not applicable.
    """

    level: str
    reason: str
    epsilon: float | None
    granularity: str
    groups: tuple[GroupAudit, ...] = ()

    @property
    def result(self) -> AuditResult | None:
        """The headline: the group with the largest ε̂ (``None`` when not applicable)."""
        if not self.groups:
            return None
        return max(self.groups, key=lambda g: g.result.epsilon).result

    @property
    def epsilon_lower_bound(self) -> float | None:
        return self.result.epsilon if self.result else None

    @property
    def violated(self) -> bool:
        """Some clients' ε̂ exceeds their accountant's ε: the code leaks more than it claims — a DP bug,
        not bad luck (at the audit's confidence)."""
        return any(g.violated for g in self.groups)

    def to_dict(self) -> dict[str, Any]:
        """The fields for ``privacy.json`` (key ``audit``) and results rows."""
        r = self.result
        return {
            "epsilon_lower_bound": r.epsilon if r else None,
            "guesses": r.guesses if r else None,
            "correct": r.correct if r else None,
            "canaries": r.canaries if r else None,
            "canaries_total": sum(g.result.canaries for g in self.groups),
            "confidence": r.confidence if r else None,
            "delta": r.delta if r else None,
            "level": self.level,
            "reason": self.reason,
            "epsilon": self.epsilon,
            "granularity": self.granularity,
            "violated": self.violated,
            "groups": [g.to_dict() for g in self.groups],
            "text": self.describe(),
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
        if self.violated:
            worst = next(g for g in self.groups if g.violated)
            return (
                f"{line}; clients {list(worst.clients)}: ε̂ = {worst.result.epsilon:.3g} > ε = "
                f"{worst.epsilon:.3g}: the run leaks more than its accountant allows (a DP bug)"
            )
        if self.epsilon is None:
            return line + "; no claimed ε to compare"
        return f"{line} ≤ ε = {self.epsilon:.3g}"


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

    Clients whose accountants report the same ε (all of them without a defense or under update
    noise; sites of different sizes under DP-SGD differ) are audited together, pooling their
    canaries; each group against its own ε, at confidence ``1 − (1 − confidence) / groups``, so
    that every group's bound holds at once at ``confidence``.

    Raises:
        RunDirError: The run has no audit record or captures.
    """
    design, canaries = read_design(run_dir)
    epsilon, granularity = design.get("epsilon"), str(design.get("granularity", "none"))
    level, reason = str(design["level"]), str(design.get("reason", ""))
    if level == NOT_APPLICABLE:
        return RunAudit(level, reason, epsilon, granularity)
    members = read_membership(run_dir, len(canaries))
    scores = canary_scores(run_dir, canaries, level=level)
    claimed = {int(k): v for k, v in dict(design.get("client_epsilons") or {}).items()}
    groups: dict[float | None, list[int]] = defaultdict(list)
    for client in sorted({c.client for c in canaries}):
        groups[claimed.get(client, epsilon)].append(client)
    each = 1.0 - (1.0 - confidence) / len(groups)
    audits = []
    for group_epsilon, clients in groups.items():
        chosen = [i for i, c in enumerate(canaries) if c.client in clients]
        result = audit_grid(
            [scores[i] for i in chosen],
            [members[i] for i in chosen],
            counts=guess_counts(len(chosen)),
            delta=float(design["delta"]),
            confidence=each,
        )
        audits.append(GroupAudit(tuple(clients), group_epsilon, replace(result, confidence=confidence)))
    return RunAudit(level, reason, epsilon, granularity, tuple(audits))
