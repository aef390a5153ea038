"""FedDP's update-level mechanism: each client clips its update and adds Gaussian noise before release.

Client-level guarantee: one Gaussian mechanism (sensitivity C, noise σC) per
round the client took part in, composed with Opacus' RDP analysis (sampling
rate 1: the client's own participation is not secret from itself). Each
client's count of releases is its :class:`LocalUpdateNoiseClient`'s state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from defenses.accounting import calibrate_noise
from defenses.base import DEFENSES, GaussianDefense, SimulatedRelease, gaussian_record
from defenses.update_ops import Update, add_gaussian, clip_update
from feddp_eval.config import DefenseConfig
from feddp_eval.federated.hooks import ClientDefense, ClientPlan, PrivacyRecord


@DEFENSES.register("local-dp")
class LocalUpdateNoise(GaussianDefense):
    """Clip the released update to L2 norm C and add N(0, σ²C²) to every coordinate."""

    granularity = "client-level"
    summary = "FedDP update noise: each client clips its update to C and adds N(0, (σC)²) before release"
    protects = "clips and noises each client's whole update before release, FedDP-style (client-level ε)"
    colour = "#D55E00"
    marker = "^"
    report_order = 2

    def setup(self, model: nn.Module, plans: Sequence[ClientPlan]) -> None:
        super().setup(model, plans)
        if self.config.target_epsilon is not None:
            rounds = max(p.rounds for p in plans)
            self.noise_multiplier = calibrate_noise(
                self.config.target_epsilon,
                delta=self.config.delta,
                sample_rate=1.0,
                steps=rounds,
                accountant=self.config.accountant,
            )

    def client(self, plan: ClientPlan) -> LocalUpdateNoiseClient:
        return LocalUpdateNoiseClient(plan, self.config, noise_multiplier=self.noise_multiplier)

    @classmethod
    def release_simulated(cls, updates: Tensor, release: SimulatedRelease) -> Tensor:
        """Each update clipped to norm C, plus N(0, (σC)²) per coordinate, as the clients release it."""
        clip, sigma = float(release.published["clip"]), float(release.published["noise_multiplier"])
        norms = updates.norm(dim=1, keepdim=True)
        updates.mul_((clip / norms.clamp_min(1e-30)).clamp(max=1.0))
        return updates.add_(torch.randn(updates.shape, generator=release.generator), alpha=sigma * clip)


class LocalUpdateNoiseClient(ClientDefense):
    """One client's update noise, counting the Gaussian mechanisms it has released."""

    def __init__(self, plan: ClientPlan, config: DefenseConfig, *, noise_multiplier: float) -> None:
        super().__init__(plan)
        self.config = config
        self.noise_multiplier = noise_multiplier
        self.rounds = 0

    def release(self, update: Update, generator: torch.Generator) -> Update:
        self.rounds += 1
        clipped = clip_update(update, self.config.clip)
        return add_gaussian(clipped, self.noise_multiplier * self.config.clip, generator)

    def privacy_record(self) -> PrivacyRecord:
        return gaussian_record(
            self.config,
            client_id=self.plan.client_id,
            mechanism="gaussian update noise",
            granularity=LocalUpdateNoise.granularity,
            noise_multiplier=self.noise_multiplier,
            history=[(self.noise_multiplier, 1.0, self.rounds)],
            sample_rate=1.0,
        )

    def state_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rounds = int(state["rounds"])
