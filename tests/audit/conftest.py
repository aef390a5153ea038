"""A DP bug for the audit to catch: a defense that claims DP-SGD's σ but adds no noise."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from defenses.base import DEFENSES
from defenses.dp_sgd import DPSGD, DPSGDClient
from feddp_eval.federated.hooks import ClientPlan


class SilentDPSGDClient(DPSGDClient):
    """Accounts for the configured σ, but its optimizer adds no noise at all."""

    @contextmanager
    def local_training(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator
    ) -> Iterator[tuple[torch.nn.Module, torch.optim.Optimizer]]:
        with super().local_training(model, optimizer, generator) as (local_model, local_opt):
            local_opt.noise_multiplier = 0.0  # type: ignore[attr-defined]  # DPOptimizer
            yield local_model, local_opt


class SilentDPSGD(DPSGD):
    """``dp-sgd`` whose clients lose the noise call (the accountant still reports σ's ε)."""

    def client(self, plan: ClientPlan) -> SilentDPSGDClient:
        return SilentDPSGDClient(plan, self.config, noise_multiplier=self.noise_multiplier)


@pytest.fixture
def silent_dp_sgd(monkeypatch: pytest.MonkeyPatch) -> str:
    """Registers the buggy defense for this test only; returns its name."""
    monkeypatch.setitem(DEFENSES._entries, "dp-sgd-silent", SilentDPSGD)
    return "dp-sgd-silent"
