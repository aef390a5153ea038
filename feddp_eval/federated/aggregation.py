"""FedAvg aggregation: the sample-count-weighted mean of client updates."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


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
