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
from typing import Any

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

    name = "none"
    poisson_sampling = False

    def setup(self, model: nn.Module, plans: Sequence[ClientPlan]) -> None:
        """Called once before the first round, e.g. to calibrate noise for the whole run."""

    @contextmanager
    def local_training(
        self, client_id: int, model: nn.Module, optimizer: torch.optim.Optimizer
    ) -> Iterator[tuple[nn.Module, torch.optim.Optimizer]]:
        """Yield the model and optimizer a client trains with this round."""
        yield model, optimizer

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
