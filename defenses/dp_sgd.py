"""Sample-level DP-SGD inside every client's local training, through Opacus.

Each client keeps one accountant for the whole run: ε accumulates over every
local step it takes in every round (a fresh engine per round, as in Flower's
Opacus example, would report one round's ε only).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from opacus.grad_sample.utils import wrap_model
from opacus.optimizers import DPOptimizer
from torch import nn

from defenses.accounting import calibrate_noise
from defenses.base import DEFENSES, GaussianDefense
from feddp_eval.config import DefenseConfig
from feddp_eval.federated.hooks import ClientPlan, PrivacyRecord


@DEFENSES.register("dp-sgd")
class DPSGD(GaussianDefense):
    """Per-sample clipping to ``clip`` and Gaussian noise σ·C on every local step (Opacus)."""

    granularity = "sample-level"
    summary = "sample-level DP-SGD in each client's local training (Opacus): clip C, noise σ, ε per client"

    def __init__(self, config: DefenseConfig) -> None:
        super().__init__(config)
        self.poisson_sampling = config.poisson_sampling
        self._plans: dict[int, ClientPlan] = {}
        self._history: dict[int, list[tuple[float, float, int]]] = {}

    def setup(self, model: nn.Module, plans: Sequence[ClientPlan]) -> None:
        super().setup(model, plans)
        self._plans = {p.client_id: p for p in plans}
        self._history = {p.client_id: [] for p in plans}
        if self.config.target_epsilon is not None:
            # One σ for everyone: the largest any client needs if it takes part in every round.
            self.noise_multiplier = max(
                calibrate_noise(
                    self.config.target_epsilon,
                    delta=self.config.delta,
                    sample_rate=self._rate(p),
                    steps=p.rounds * p.steps_per_round,
                    accountant=self.config.accountant,
                )
                for p in plans
            )

    def _rate(self, plan: ClientPlan) -> float:
        return min(1.0, plan.batch_size / plan.n_samples)

    @contextmanager
    def local_training(
        self, client_id: int, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator
    ) -> Iterator[tuple[nn.Module, torch.optim.Optimizer]]:
        plan = self._plans[client_id]
        private_model = wrap_model(
            model, self.config.grad_sample_mode, batch_first=True, loss_reduction="mean"
        )
        device = next(model.parameters()).device
        noise_generator = generator if device.type == "cpu" else _on_device(generator, device)
        private_optimizer = DPOptimizer(
            optimizer,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=self.config.clip,
            # q·n: a site smaller than one batch sends all its tiles every step, not `batch_size` of them.
            expected_batch_size=min(plan.batch_size, plan.n_samples),
            loss_reduction="mean",
            generator=noise_generator,
        )
        rate = self._rate(plan)
        history = self._history[client_id]

        def account(_: DPOptimizer) -> None:
            if history and history[-1][:2] == (self.noise_multiplier, rate):
                history[-1] = (self.noise_multiplier, rate, history[-1][2] + 1)
            else:
                history.append((self.noise_multiplier, rate, 1))

        private_optimizer.attach_step_hook(account)
        try:
            yield private_model, private_optimizer
        finally:
            if hasattr(private_model, "_close"):
                private_model._close()
            for p in model.parameters():
                p.grad_sample = None  # type: ignore[attr-defined]  # set by Opacus

    def empty_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        # Opacus clips an empty set of per-sample gradients to zero and still adds the noise.
        for p in model.parameters():
            if p.requires_grad:
                p.grad_sample = p.new_zeros((0, *p.shape))  # type: ignore[attr-defined]
        optimizer.step()

    def privacy_records(self) -> list[PrivacyRecord]:
        return [
            self.record(
                client_id,
                "dp-sgd (subsampled Gaussian)",
                history=history,
                sample_rate=self._rate(self._plans[client_id]),
                steps=sum(k for _, _, k in history),
            )
            for client_id, history in sorted(self._history.items())
        ]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "poisson_sampling": self.poisson_sampling,
            "grad_sample_mode": self.config.grad_sample_mode,
        }


def _on_device(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from a CPU generator's next draw."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)
