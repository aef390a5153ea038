"""Gradient pruning (the defense evaluated in the DLG paper): release only the largest coordinates."""

from __future__ import annotations

from typing import Any

import torch

from defenses.base import DEFENSES, Defense, UnaccountedClient
from defenses.update_ops import Update
from feddp_eval.config import DefenseConfig
from feddp_eval.errors import ConfigError
from feddp_eval.federated.hooks import ClientPlan


@DEFENSES.register("prune")
class Prune(Defense):
    """Zero the ``prune_ratio`` share of update coordinates with the smallest magnitude (no guarantee)."""

    summary = "magnitude pruning of the released update (no formal privacy guarantee)"

    def __init__(self, config: DefenseConfig) -> None:
        super().__init__(config)
        if config.noise > 0 or config.target_epsilon is not None:
            raise ConfigError(
                "`prune` adds no noise and has no accountant; drop `noise`/`target_epsilon` "
                "or choose dp-sgd, local-dp or central-dp"
            )

    def client(self, plan: ClientPlan) -> PruneClient:
        return PruneClient(plan, ratio=self.config.prune_ratio)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "prune_ratio": self.config.prune_ratio}


class PruneClient(UnaccountedClient):
    """One client releasing its update with the ``ratio`` share of smallest coordinates zeroed."""

    def __init__(self, plan: ClientPlan, *, ratio: float) -> None:
        super().__init__(plan, mechanism="prune")
        self.ratio = ratio

    def release(self, update: Update, generator: torch.Generator) -> Update:
        return prune(update, self.ratio)


def prune(update: Update, ratio: float) -> Update:
    """``update`` with its ``ratio`` share of smallest-magnitude coordinates (over all tensors) zeroed."""
    flat = torch.cat([t.flatten() for t in update.values()])
    n_zero = round(ratio * flat.numel())
    if n_zero == 0:
        return dict(update)
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    keep[torch.argsort(flat.abs(), stable=True)[:n_zero]] = False
    out, start = {}, 0
    for name, t in update.items():
        out[name] = t * keep[start : start + t.numel()].view_as(t)
        start += t.numel()
    return out
