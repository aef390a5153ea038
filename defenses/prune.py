"""Gradient pruning (the defense evaluated in the DLG paper): release only the largest coordinates."""

from __future__ import annotations

from typing import Any

import torch

from defenses.base import DEFENSES, Defense
from defenses.update_ops import Update
from feddp_eval.config import DefenseConfig
from feddp_eval.errors import ConfigError


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

    def release(self, client_id: int, update: Update, generator: torch.Generator) -> Update:
        flat = torch.cat([t.flatten() for t in update.values()])
        n_zero = round(self.config.prune_ratio * flat.numel())
        if n_zero == 0:
            return dict(update)
        keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
        keep[torch.argsort(flat.abs(), stable=True)[:n_zero]] = False
        out, start = {}, 0
        for name, t in update.items():
            out[name] = t * keep[start : start + t.numel()].view_as(t)
            start += t.numel()
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "prune_ratio": self.config.prune_ratio}
