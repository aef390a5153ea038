"""FedDP's update-level mechanism: each client clips its update and adds Gaussian noise before release.

Client-level guarantee: one Gaussian mechanism (sensitivity C, noise σC) per
round the client took part in, composed with Opacus' RDP analysis (sampling
rate 1: the client's own participation is not secret from itself).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from defenses.accounting import calibrate_noise
from defenses.base import DEFENSES, GaussianDefense
from defenses.update_ops import Update, add_gaussian, clip_update
from feddp_eval.config import DefenseConfig
from feddp_eval.federated.hooks import ClientPlan, PrivacyRecord


@DEFENSES.register("local-dp")
class LocalUpdateNoise(GaussianDefense):
    """Clip the released update to L2 norm C and add N(0, σ²C²) to every coordinate."""

    granularity = "client-level"
    summary = "FedDP update noise: each client clips its update to C and adds N(0, (σC)²) before release"

    def __init__(self, config: DefenseConfig) -> None:
        super().__init__(config)
        self._rounds: dict[int, int] = {}

    def setup(self, model: nn.Module, plans: Sequence[ClientPlan]) -> None:
        super().setup(model, plans)
        self._rounds = {p.client_id: 0 for p in plans}
        if self.config.target_epsilon is not None:
            rounds = max(p.rounds for p in plans)
            self.noise_multiplier = calibrate_noise(
                self.config.target_epsilon,
                delta=self.config.delta,
                sample_rate=1.0,
                steps=rounds,
                accountant=self.config.accountant,
            )

    def release(self, client_id: int, update: Update, generator: torch.Generator) -> Update:
        self._rounds[client_id] = self._rounds.get(client_id, 0) + 1
        clipped = clip_update(update, self.config.clip)
        return add_gaussian(clipped, self.noise_multiplier * self.config.clip, generator)

    def privacy_records(self) -> list[PrivacyRecord]:
        return [
            self.record(client_id, "gaussian update noise", sample_rate=1.0, steps=rounds)
            for client_id, rounds in sorted(self._rounds.items())
        ]
