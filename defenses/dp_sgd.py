"""Sample-level DP-SGD inside every client's local training, through Opacus.

Each client keeps one accountant for the whole run: ε accumulates over every
local step it takes in every round (a fresh engine per round, as in Flower's
Opacus example, would report one round's ε only). The accountant is the
client's :class:`DPSGDClient`, whose history is saved and restored as JSON.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from opacus.grad_sample.utils import wrap_model
from opacus.optimizers import DPOptimizer
from torch import Tensor, nn

from defenses.accounting import calibrate_noise
from defenses.base import DEFENSES, GaussianDefense, History, SimulatedRelease, gaussian_record
from defenses.book_keeping import BookKeepingDPOptimizer, BookKeepingModule
from feddp_eval.config import DefenseConfig
from feddp_eval.errors import ConfigError
from feddp_eval.federated.hooks import ClientDefense, ClientPlan, PrivacyRecord


@DEFENSES.register("dp-sgd")
class DPSGD(GaussianDefense):
    """Per-sample clipping to ``clip`` and Gaussian noise σ·C on every local step (Opacus)."""

    granularity = "sample-level"
    summary = "sample-level DP-SGD in each client's local training (Opacus): clip C, noise σ, ε per client"
    protects = (
        "clips and noises each example's gradient, protecting each training tile in each "
        "released update (sample-level ε)"
    )
    colour = "#0072B2"
    marker = "o"
    report_order = 1

    def __init__(self, config: DefenseConfig) -> None:
        super().__init__(config)
        self.poisson_sampling = config.poisson_sampling

    def setup(self, model: nn.Module, plans: Sequence[ClientPlan]) -> None:
        super().setup(model, plans)
        if self.config.target_epsilon is not None:
            # One σ for everyone: the largest any client needs if it takes part in every round.
            self.noise_multiplier = max(
                calibrate_noise(
                    self.config.target_epsilon,
                    delta=self.config.delta,
                    sample_rate=sample_rate(p),
                    steps=p.rounds * p.steps_per_round,
                    accountant=self.config.accountant,
                )
                for p in plans
            )

    def client(self, plan: ClientPlan) -> DPSGDClient:
        return DPSGDClient(plan, self.config, noise_multiplier=self.noise_multiplier)

    @classmethod
    def release_simulated(cls, updates: Tensor, release: SimulatedRelease) -> Tensor:
        """One-tile rounds of one local SGD step (``−lr · g``), as DP-SGD releases them, in place: the
        tile's gradient clipped to C (Opacus' factor ``min(1, C / (‖g‖ + 1e-6))``), plus N(0, (σC)²),
        over the expected batch size min(B, n), times −lr."""
        recipe, published = release.recipe, release.published
        if recipe.steps != 1 or recipe.optimizer != "sgd":
            raise ConfigError(
                "a dp-sgd release is modelled for one local SGD step only (`--local-steps 1`), but this "
                f"round took {recipe.steps} {recipe.optimizer} step(s)"
            )
        clip, sigma = float(published["clip"]), float(published["noise_multiplier"])
        expected = min(int(published["batch_size"]), int(published["n_samples"]))
        gradients = updates.div_(-recipe.lr)
        norms = gradients.norm(dim=1, keepdim=True)
        gradients.mul_((clip / (norms + 1e-6)).clamp(max=1.0))
        gradients.add_(torch.randn(gradients.shape, generator=release.generator), alpha=sigma * clip)
        return gradients.mul_(-recipe.lr / expected)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "poisson_sampling": self.poisson_sampling,
            "grad_sample_mode": self.config.grad_sample_mode,
        }


def sample_rate(plan: ClientPlan) -> float:
    """The chance q that a tile is in one local step's batch."""
    return min(1.0, plan.batch_size / plan.n_samples)


class DPSGDClient(ClientDefense):
    """One client's DP-SGD: Opacus around its local training, and its accountant's history.

    Args:
        plan: The client's part in the run.
        config: The ``dp-sgd`` settings (clip, δ, accountant, grad_sample_mode).
        noise_multiplier: σ, as :class:`DPSGD` calibrated it for the whole run.
    """

    def __init__(self, plan: ClientPlan, config: DefenseConfig, *, noise_multiplier: float) -> None:
        super().__init__(plan)
        self.config = config
        self.noise_multiplier = noise_multiplier
        self.poisson_sampling = config.poisson_sampling
        self.history: History = []

    @contextmanager
    def local_training(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator
    ) -> Iterator[tuple[nn.Module, torch.optim.Optimizer]]:
        device = next(model.parameters()).device
        noise_generator = generator if device.type == "cpu" else _on_device(generator, device)
        options: dict[str, Any] = {
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.config.clip,
            # q·n: a site smaller than one batch sends all its tiles every step, not `batch_size` of them.
            "expected_batch_size": min(self.plan.batch_size, self.plan.n_samples),
            "loss_reduction": "mean",
            "generator": noise_generator,
        }
        private_model: nn.Module
        private_optimizer: DPOptimizer
        if self.config.grad_sample_mode == "bk":
            private_model = book_keeping = BookKeepingModule(model, loss_reduction="mean")
            private_optimizer = BookKeepingDPOptimizer(optimizer, module=book_keeping, **options)
        else:
            private_model = wrap_model(
                model, self.config.grad_sample_mode, batch_first=True, loss_reduction="mean"
            )
            private_optimizer = DPOptimizer(optimizer, **options)
        private_optimizer.attach_step_hook(lambda _: self._account())
        try:
            yield private_model, private_optimizer
        finally:
            if callable(close := getattr(private_model, "_close", None)):
                close()
            for p in model.parameters():
                p.grad_sample = None  # type: ignore[attr-defined]  # set by Opacus

    def _account(self) -> None:
        """One more subsampled Gaussian mechanism (an optimizer step) in the history."""
        phase = (self.noise_multiplier, sample_rate(self.plan))
        if self.history and self.history[-1][:2] == phase:
            self.history[-1] = (*phase, self.history[-1][2] + 1)
        else:
            self.history.append((*phase, 1))

    def empty_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        # Opacus clips an empty set of per-sample gradients to zero and still adds the noise.
        if isinstance(optimizer, BookKeepingDPOptimizer):
            optimizer.module.empty_batch()
            optimizer.step()
            return
        for p in model.parameters():
            if p.requires_grad:
                p.grad_sample = p.new_zeros((0, *p.shape))  # type: ignore[attr-defined]
        optimizer.step()

    def privacy_record(self) -> PrivacyRecord:
        return gaussian_record(
            self.config,
            client_id=self.plan.client_id,
            mechanism="dp-sgd (subsampled Gaussian)",
            granularity=DPSGD.granularity,
            noise_multiplier=self.noise_multiplier,
            history=self.history,
            sample_rate=sample_rate(self.plan),
        )

    def state_dict(self) -> dict[str, Any]:
        return {"history": [list(phase) for phase in self.history]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = [(float(s), float(q), int(k)) for s, q, k in state["history"]]


def _on_device(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded from a CPU generator's next draw."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)
