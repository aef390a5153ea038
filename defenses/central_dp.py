"""DP-FedAvg (McMahan et al. 2018): the server clips each update, averages, and noises the average.

This protects the clients against whoever sees the aggregate or the final
model. It does **not** protect against the server: the server receives every
raw update before it clips anything, and that is what the capture records.
It is a server-side defense: :class:`CentralDPAggregator` wraps whichever
aggregator the server would otherwise use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from defenses.accounting import calibrate_noise
from defenses.base import DEFENSES, GaussianDefense, gaussian_record
from defenses.update_ops import Update, add_gaussian, clip_update
from feddp_eval.config import DefenseConfig
from feddp_eval.federated.aggregation import Aggregator
from feddp_eval.federated.hooks import ClientDefense, ClientPlan, PrivacyRecord


@DEFENSES.register("central-dp")
class CentralDP(GaussianDefense):
    """Server-side clipping to C, uniform average over the m sampled clients, N(0, (σC/m)²) on the average."""

    side = "server"
    granularity = "client-level"
    summary = (
        "DP-FedAvg: the server clips, averages and noises (σC/m); protects the aggregate and "
        "final model, NOT against the server"
    )
    protects_against_server = False
    protects = (
        "noises only the aggregate at the server, protecting the final model from third "
        "parties but NOT the updates the server sees: expect leakage like the undefended run "
        "(client-level ε)"
    )
    caveat = "noises only the aggregate, so it is not expected to stop a curious server"
    colour = "#009E73"
    marker = "D"
    report_order = 3

    def __init__(self, config: DefenseConfig) -> None:
        super().__init__(config)
        self._rate = 1.0

    def setup(self, model: nn.Module, plans: Sequence[ClientPlan]) -> None:
        super().setup(model, plans)
        self._rate = max(p.participation for p in plans)
        if self.config.target_epsilon is not None:
            self.noise_multiplier = calibrate_noise(
                self.config.target_epsilon,
                delta=self.config.delta,
                sample_rate=self._rate,
                steps=max(p.rounds for p in plans),
                accountant=self.config.accountant,
            )

    def client(self, plan: ClientPlan) -> ClientDefense:
        """Clients release their raw updates and report nothing: the guarantee is the server's."""
        return ClientDefense(plan)

    def wrap(self, inner: Aggregator) -> CentralDPAggregator:
        return CentralDPAggregator(
            inner, self.config, noise_multiplier=self.noise_multiplier, rate=self._rate
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "protects_against_server": False}


class CentralDPAggregator:
    """Clip every update to C, aggregate them with ``inner`` at uniform weights, add N(0, (σC/m)²).

    Args:
        inner: The aggregator of the clipped updates (FedAvg).
        config: The ``central-dp`` settings (clip, δ, accountant).
        noise_multiplier: σ.
        rate: The largest chance of a client being sampled in a round.
    """

    def __init__(
        self, inner: Aggregator, config: DefenseConfig, *, noise_multiplier: float, rate: float
    ) -> None:
        self.inner = inner
        self.config = config
        self.noise_multiplier = noise_multiplier
        self.rate = rate
        self.rounds = 0

    def aggregate(
        self, updates: Sequence[Update], weights: Sequence[float], generator: torch.Generator
    ) -> Update:
        self.rounds += 1
        m = len(updates)
        # Uniform weights: a sample-count weighting would let one client's weight raise the sensitivity.
        clipped = [clip_update(u, self.config.clip) for u in updates]
        average = self.inner.aggregate(clipped, [1.0] * m, generator)
        return add_gaussian(average, self.noise_multiplier * self.config.clip / m, generator)

    def privacy_records(self) -> list[PrivacyRecord]:
        record = gaussian_record(
            self.config,
            client_id=None,
            mechanism="dp-fedavg (server-side Gaussian)",
            granularity=CentralDP.granularity,
            noise_multiplier=self.noise_multiplier,
            history=[(self.noise_multiplier, self.rate, self.rounds)],
            sample_rate=self.rate,
        )
        return [*self.inner.privacy_records(), record]

    def state_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "inner": self.inner.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rounds = int(state["rounds"])
        self.inner.load_state_dict(state["inner"])
