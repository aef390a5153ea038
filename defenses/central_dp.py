"""DP-FedAvg (McMahan et al. 2018): the server clips each update, averages, and noises the average.

This protects the clients against whoever sees the aggregate or the final
model. It does **not** protect against the server: the server receives every
raw update before it clips anything, and that is what the capture records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from defenses.accounting import calibrate_noise
from defenses.base import DEFENSES, GaussianDefense
from defenses.update_ops import Update, add_gaussian, clip_update
from feddp_eval.config import DefenseConfig
from feddp_eval.federated.aggregation import fedavg
from feddp_eval.federated.hooks import ClientPlan, PrivacyRecord


@DEFENSES.register("central-dp")
class CentralDP(GaussianDefense):
    """Server-side clipping to C, uniform average over the m sampled clients, N(0, (σC/m)²) on the average."""

    granularity = "client-level"
    summary = (
        "DP-FedAvg: the server clips, averages and noises (σC/m); protects the aggregate and "
        "final model, NOT against the server"
    )
    protects_against_server = False

    def __init__(self, config: DefenseConfig) -> None:
        super().__init__(config)
        self._rate = 1.0
        self._rounds = 0

    def setup(self, model: nn.Module, plans: Sequence[ClientPlan]) -> None:
        super().setup(model, plans)
        self._rate = max(p.participation for p in plans)
        self._rounds = 0
        if self.config.target_epsilon is not None:
            self.noise_multiplier = calibrate_noise(
                self.config.target_epsilon,
                delta=self.config.delta,
                sample_rate=self._rate,
                steps=max(p.rounds for p in plans),
                accountant=self.config.accountant,
            )

    def aggregate(
        self, updates: Sequence[Update], weights: Sequence[float], generator: torch.Generator
    ) -> Update:
        self._rounds += 1
        m = len(updates)
        # Uniform weights: a sample-count weighting would let one client's weight raise the sensitivity.
        average = fedavg([clip_update(u, self.config.clip) for u in updates], [1.0] * m)
        return add_gaussian(average, self.noise_multiplier * self.config.clip / m, generator)

    def privacy_records(self) -> list[PrivacyRecord]:
        return [
            self.record(None, "dp-fedavg (server-side Gaussian)", sample_rate=self._rate, steps=self._rounds)
        ]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "protects_against_server": False}
