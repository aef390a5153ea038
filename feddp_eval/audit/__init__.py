"""One-run privacy audit (Steinke, Nasr, Jagielski, NeurIPS 2023) with white-box Dirac canaries.

m canaries, each a vector of norm C (the defense's clip) on one random coordinate of the model,
are each injected into training with probability ½ — as a sample whose clipped gradient joins
the local steps it is sampled into (sample-level DP-SGD, or no defense), or as a part of a
client's update before its clip and noise (client-level local DP). The server's captured updates,
summed over rounds, are read at each canary's coordinate; the auditor guesses "in" for the
highest and "out" for the lowest, and the count of correct guesses gives ε̂, a lower bound on the
ε of the code that ran, at the run's δ and 95% confidence (:mod:`feddp_eval.metrics.audit`).

ε̂ is a lower bound from this one run's canaries: the code's true ε is at least ε̂ (else an
event of probability ≤ 5% happened). It is usually far below the accountant's ε because the
accountant's ε covers the worst case over all data and every possible observer, while ε̂ is what
m canaries scored by one statistic reveal in one run; ε̂ > ε means the code does not do what its
accountant assumes (a lost noise call, a clip after summing), not an unlucky run.

Use::

    hooks = enable_audit(defense, config.train, seed=config.seed)   # before the engine runs
    result = build_engine(config.train.engine).run(FedAvgJob(..., hooks=hooks, capture=...))
    audit = finish_audit(run_dir, hooks, result.privacy_summary())  # writes the record, returns ε̂
    audit = audit_run(run_dir)                                      # later, from the run directory

The audit depends on the engine only through the hooks: each client side the engine builds with
``hooks.client(plan)`` plants its own canaries, wherever it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from feddp_eval.audit.canaries import Canary, canary_level
from feddp_eval.audit.inject import AuditedClient, AuditedHooks
from feddp_eval.audit.score import RunAudit, audit_run, canary_scores
from feddp_eval.config import TrainConfig
from feddp_eval.federated.hooks import TrainingHooks


def enable_audit(hooks: TrainingHooks, train: TrainConfig, *, seed: int) -> TrainingHooks:
    """``hooks`` with ``train.audit_canaries`` canaries injected when ``train.audit`` is on, else as given."""
    if not train.audit:
        return hooks
    return AuditedHooks(hooks, canaries=train.audit_canaries, seed=seed)


def finish_audit(
    run_dir: str | Path, hooks: TrainingHooks, privacy: Mapping[str, Any], *, confidence: float = 0.95
) -> RunAudit | None:
    """After training: record the canaries in ``run_dir`` and audit the run (``None``: audit off).

    ``privacy`` is the run's privacy summary (``FedAvgResult.privacy_summary()``): the ε the
    canaries are held to."""
    if not isinstance(hooks, AuditedHooks):
        return None
    hooks.write(run_dir, privacy)
    return audit_run(run_dir, confidence=confidence)


__all__ = [
    "AuditedClient",
    "AuditedHooks",
    "Canary",
    "RunAudit",
    "audit_run",
    "canary_level",
    "canary_scores",
    "enable_audit",
    "finish_audit",
]
