"""The seam where defenses enter federated training.

:class:`TrainingHooks` is the undefended protocol: it trains locally as given,
releases the raw update, and averages. A defense (``defenses.base.Defense``)
overrides the hooks it needs:

- client side, :meth:`local_training` wraps the model and optimizer (DP-SGD);
- update level, :meth:`release` transforms what the client sends (update noise, pruning);
- server side, :meth:`aggregate` changes the aggregate (central DP).

The capturing server sees exactly what :meth:`release` returns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from feddp_eval.federated.aggregation import fedavg

Update = dict[str, Tensor]


@dataclass(frozen=True)
class ClientPlan:
    """What a defense may know in advance about one client's part in the run."""

    client_id: int
    n_samples: int
    batch_size: int
    steps_per_round: int
    rounds: int
    participation: float  # probability of being sampled in a round


@dataclass(frozen=True)
class PrivacyRecord:
    """A privacy guarantee, always with its δ, granularity, mechanism and accountant.

    ``epsilon`` is ``None`` when the mechanism has no formal guarantee.
    """

    client_id: int | None
    mechanism: str
    granularity: str  # "sample-level", "client-level" or "none"
    epsilon: float | None
    delta: float | None
    accountant: str | None
    noise_multiplier: float | None = None
    clip: float | None = None
    sample_rate: float | None = None
    steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class TrainingHooks:
    """No defense: plain local training, raw updates, sample-weighted FedAvg."""

    name: ClassVar[str] = "none"
    poisson_sampling = False
    notes: Sequence[str] = ()

    def setup(self, model: nn.Module, plans: Sequence[ClientPlan]) -> None:
        """Called once before the first round, e.g. to calibrate noise for the whole run."""

    @contextmanager
    def local_training(
        self, client_id: int, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator
    ) -> Iterator[tuple[nn.Module, torch.optim.Optimizer]]:
        """Yield the model and optimizer a client trains with this round (``generator``: for its noise)."""
        yield model, optimizer

    def empty_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """A local step whose (Poisson-sampled) batch is empty; without a defense nothing happens."""

    def release(self, client_id: int, update: Update, generator: torch.Generator) -> Update:
        """The update the client sends, computed from its raw local change."""
        return update

    def aggregate(
        self, updates: Sequence[Update], weights: Sequence[float], generator: torch.Generator
    ) -> Update:
        """The server's combined update from the released ones."""
        return fedavg(updates, weights)

    def privacy_records(self) -> list[PrivacyRecord]:
        """Current guarantees, one per protected unit; empty when there is none."""
        return []

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable settings, for capture metadata and manifests."""
        return {"name": self.name}


def privacy_summary(records: Sequence[PrivacyRecord]) -> dict[str, Any]:
    """The run's headline guarantee: the largest ε over protected units, with δ and every label.

    ``epsilon`` is ``None`` (and ``granularity`` ``"none"``) when no record carries a formal guarantee.
    """
    formal = [r for r in records if r.epsilon is not None]
    per_unit = [r.to_dict() for r in records]
    if not formal:
        return {
            "epsilon": None,
            "delta": None,
            "granularity": "none",
            "accountant": None,
            "mechanism": records[0].mechanism if records else "none",
            "noise_multiplier": None,
            "clip": None,
            "per_client": per_unit,
        }
    worst = max(formal, key=lambda r: r.epsilon if r.epsilon is not None else -1.0)
    return {
        "epsilon": worst.epsilon,
        "delta": worst.delta,
        "granularity": worst.granularity,
        "accountant": worst.accountant,
        "mechanism": worst.mechanism,
        "noise_multiplier": worst.noise_multiplier,
        "clip": worst.clip,
        "per_client": per_unit,
    }


def format_epsilon(summary: dict[str, Any]) -> str:
    """``ε = 3.21 (δ = 1e-05, sample-level, rdp)``, or a plain statement that there is no guarantee."""
    if summary.get("epsilon") is None:
        return "no formal guarantee"
    eps = summary["epsilon"]
    value = "∞" if eps == float("inf") else f"{eps:.3g}"
    return f"ε = {value} (δ = {summary['delta']:g}, {summary['granularity']}, {summary['accountant']})"
