"""Operations on whole updates (``{parameter name: tensor}``) treated as one flat vector."""

from __future__ import annotations

import torch
from torch import Tensor

Update = dict[str, Tensor]


def global_norm(update: Update) -> float:
    """L2 norm of the concatenation of every tensor in ``update``."""
    return float(torch.sqrt(torch.stack([(t.double() ** 2).sum() for t in update.values()]).sum()))


def clip_update(update: Update, bound: float) -> Update:
    """Scale ``update`` so its global L2 norm is at most ``bound`` (unchanged if already within)."""
    norm = global_norm(update)
    scale = min(1.0, bound / norm) if norm > 0 else 1.0
    return {name: t * scale for name, t in update.items()}


def add_gaussian(update: Update, std: float, generator: torch.Generator) -> Update:
    """``update`` plus i.i.d. N(0, std²) on every coordinate (drawn on CPU from ``generator``)."""
    return {
        name: t + torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device) * std
        for name, t in update.items()
    }
