"""Server-side aggregation: the :class:`Aggregator` protocol and FedAvg, the sample-weighted mean.

A server-side defense (``defenses.central_dp``) is an aggregator wrapping an inner one, as
Flower's DP strategies wrap any strategy; it never re-implements the average.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from feddp_eval.federated.privacy import PrivacyRecord


def fedavg(updates: Sequence[dict[str, Tensor]], weights: Sequence[float]) -> dict[str, Tensor]:
    """Weighted mean of updates, parameter by parameter.

    Args:
        updates: One ``{parameter name: tensor}`` per client, all with the same keys and shapes.
        weights: Non-negative weight per client (usually its number of samples), not all zero.
    """
    if len(updates) == 0 or len(updates) != len(weights):
        raise ValueError(
            f"need one weight per update, but got {len(updates)} updates, {len(weights)} weights"
        )
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"weights must be non-negative and not all zero, but got {list(weights)}")
    keys = updates[0].keys()
    for u in updates[1:]:
        if u.keys() != keys:
            raise ValueError("updates carry different parameter names")
    return {
        name: torch.stack([u[name] * (w / total) for u, w in zip(updates, weights, strict=True)]).sum(0)
        for name in keys
    }


class Aggregator(Protocol):
    """What the server does with one round's released updates."""

    def aggregate(
        self, updates: Sequence[dict[str, Tensor]], weights: Sequence[float], generator: torch.Generator
    ) -> dict[str, Tensor]:
        """The combined update (``generator``: for any server-side noise)."""
        ...

    def privacy_records(self) -> list[PrivacyRecord]:
        """The server side's guarantees so far; empty without a server-side defense."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The server side's accountant state as JSON-serialisable data."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`."""
        ...


class FedAvg:
    """Sample-count-weighted FedAvg (:func:`fedavg`); no guarantee, no state."""

    def aggregate(
        self, updates: Sequence[dict[str, Tensor]], weights: Sequence[float], generator: torch.Generator
    ) -> dict[str, Tensor]:
        return fedavg(updates, weights)

    def privacy_records(self) -> list[PrivacyRecord]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass
