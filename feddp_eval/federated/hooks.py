"""The seam where defenses enter federated training, split by who runs each part.

- :class:`ClientDefense` is one client's side, built per client and runnable on its own
  (later inside a Flower ``ClientApp``): :meth:`~ClientDefense.local_training` wraps the model
  and optimizer (DP-SGD), :meth:`~ClientDefense.release` transforms what the client sends
  (update noise, pruning), and its accountant history goes in and out as JSON through
  :meth:`~ClientDefense.state_dict` / :meth:`~ClientDefense.load_state_dict`.
- The server side is an :class:`~feddp_eval.federated.aggregation.Aggregator`; a server-side
  defense (central DP) wraps an inner one instead of averaging itself.
- :class:`TrainingHooks` is the run-level factory an engine receives: it calibrates once for
  the whole run (:meth:`~TrainingHooks.setup`), builds each client's side
  (:meth:`~TrainingHooks.client`) and wraps the aggregator (:meth:`~TrainingHooks.wrap`). This
  base is the undefended protocol.

The capturing server sees exactly what :meth:`ClientDefense.release` returns.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from feddp_eval.federated.aggregation import Aggregator
from feddp_eval.federated.privacy import PrivacyRecord  # re-exported: defenses and engines import it here

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


class ClientDefense:
    """One client's side of a defense; this base trains as given and releases the raw update.

    Args:
        plan: The client's part in the run.
    """

    poisson_sampling: bool = False

    def __init__(self, plan: ClientPlan) -> None:
        self.plan = plan

    @contextmanager
    def local_training(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator
    ) -> Iterator[tuple[nn.Module, torch.optim.Optimizer]]:
        """Yield the model and optimizer the client trains with this round (``generator``: for its noise)."""
        yield model, optimizer

    def empty_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """A local step whose (Poisson-sampled) batch is empty: a step on a zero gradient, the step
        DP-SGD takes on its noise alone with the noise at 0 (SGD's momentum and Adam's moments still
        move the weights), so the attacker's replay of the recorded batches is exact."""
        for p in model.parameters():
            if p.requires_grad:
                p.grad = torch.zeros_like(p)
        optimizer.step()

    def release(self, update: Update, generator: torch.Generator) -> Update:
        """The update the client sends, computed from its raw local change."""
        return update

    def privacy_record(self) -> PrivacyRecord | None:
        """The client's guarantee so far; ``None`` when its side reports nothing."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """The accountant's history as JSON-serialisable data (empty without an accountant)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the guarantee keeps accumulating from there."""


class TrainingHooks:
    """No defense: the run-level factory of plain clients and an unchanged aggregator."""

    name: ClassVar[str] = "none"
    poisson_sampling: bool = False
    notes: Sequence[str] = ()

    def setup(self, model: nn.Module, plans: Sequence[ClientPlan]) -> None:
        """Called once before the first round, e.g. to calibrate noise for the whole run."""

    def client(self, plan: ClientPlan) -> ClientDefense:
        """A fresh client side for ``plan`` (after :meth:`setup`), holding that client's accountant."""
        return ClientDefense(plan)

    def wrap(self, inner: Aggregator) -> Aggregator:
        """The server's aggregator: ``inner`` itself unless the defense acts at the server."""
        return inner

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable settings, for capture metadata and manifests."""
        return {"name": self.name}


def privacy_summary(
    records: Sequence[PrivacyRecord], *, server: Sequence[PrivacyRecord] = ()
) -> dict[str, Any]:
    """The run's headline guarantee: the largest ε over protected units, with δ and every label.

    ``records`` are the clients' (what holds against the server), ``server`` the server-side
    defense's (what holds for whoever sees the aggregate). With both, the headline is the
    clients' formal guarantee when there is one, and ``server`` holds the server's summary;
    with one side only, the headline is that side's.

    ``epsilon`` is ``None`` (and ``granularity`` ``"none"``) when no record carries a formal guarantee.
    """
    if not (records and server):
        return _summary([*records, *server])
    client_side = records if any(r.epsilon is not None for r in records) else [*records, *server]
    return {**_summary(client_side), "server": _summary(server)}


def _summary(records: Sequence[PrivacyRecord]) -> dict[str, Any]:
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
