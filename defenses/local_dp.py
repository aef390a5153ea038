"""FedDP's update-level mechanism: each client clips its update and adds Gaussian noise before release.

Client-level guarantee: one Gaussian mechanism (sensitivity C, noise σC) per
round the client took part in, composed with Opacus' RDP analysis (sampling
rate 1: the client's own participation is not secret from itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from defenses.accounting import calibrate_noise, epsilon
from defenses.base import DEFENSES, Defense
from defenses.update_ops import Update, add_gaussian, clip_update
from feddp_eval.config import DefenseConfig
from feddp_eval.errors import ConfigError
from feddp_eval.federated.hooks import ClientPlan, PrivacyRecord


@DEFENSES.register("local-dp")
class LocalUpdateNoise(Defense):
    """Clip the released update to L2 norm C and add N(0, σ²C²) to every coordinate."""

    granularity = "client-level"
    summary = "FedDP update noise: each client clips its update to C and adds N(0, (σC)²) before release"

    def __init__(self, config: DefenseConfig) -> None:
        super().__init__(config)
        if config.target_epsilon is not None and config.noise > 0:
            raise ConfigError("give either `noise` or `target_epsilon` for local-dp, not both")
        self.noise_multiplier = config.noise
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
            PrivacyRecord(
                client_id=client_id,
                mechanism="gaussian update noise",
                granularity="client-level",
                epsilon=epsilon(
                    [(self.noise_multiplier, 1.0, rounds)],
                    delta=self.config.delta,
                    accountant=self.config.accountant,
                ),
                delta=self.config.delta,
                accountant=self.config.accountant,
                noise_multiplier=self.noise_multiplier,
                clip=self.config.clip,
                sample_rate=1.0,
                steps=rounds,
            )
            for client_id, rounds in sorted(self._rounds.items())
        ]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "noise_multiplier": self.noise_multiplier,
            "clip": self.config.clip,
            "delta": self.config.delta,
            "accountant": self.config.accountant,
        }
