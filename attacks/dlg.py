"""Deep Leakage from Gradients (Zhu et al. 2019): squared L2 update distance, L-BFGS."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from attacks.base import ATTACKS, AttackConfig
from attacks.inversion import GradientInversion
from feddp_eval.errors import ConfigError


@dataclass(frozen=True)
class DLGConfig(AttackConfig):
    """DLG settings: L-BFGS with step size ``lr`` (1 in the paper).

    ``scale`` multiplies both updates before the distance: a client's update is
    ``lr`` times its gradient, and L-BFGS stalls on distances of order lr² ≈ 1e-6.
    """

    lr: float = 1.0
    history_size: int = 100
    scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lr <= 0 or self.scale <= 0:
            raise ConfigError(f"`lr` and `scale` must be > 0, but got {self.lr}, {self.scale}")


@ATTACKS.register("dlg")
class DLG(GradientInversion):
    """Squared L2 distance between simulated and captured update; image (and mask logits) by L-BFGS."""

    summary = "Zhu et al. 2019: squared L2 between simulated and captured update, L-BFGS"
    Config = DLGConfig
    config: DLGConfig

    def distance(self, simulated: Tensor, target: Tensor) -> Tensor:
        return ((simulated - target) * self.config.scale).pow(2).sum()

    def make_optimizer(self, image: list[Tensor], mask: list[Tensor]) -> torch.optim.Optimizer:
        variables = image + mask  # L-BFGS takes one parameter group: the paper optimises both jointly
        # As in the paper's code: fixed step, no line search (a strong-Wolfe search stalls here),
        # and no tolerance-based exit (the shared loop decides when to stop).
        return torch.optim.LBFGS(
            variables,
            lr=self.config.lr,
            max_iter=1,
            history_size=self.config.history_size,
            tolerance_grad=0.0,
            tolerance_change=0.0,
        )

    def step(self, optimizer, closure):  # type: ignore[no-untyped-def]
        first: list[Tensor] = []

        def lbfgs_closure() -> Tensor:
            optimizer.zero_grad(set_to_none=True)
            values = closure()
            if not first:
                first.append(values.detach())
            total = values.sum()
            total.backward()
            return total

        optimizer.step(lbfgs_closure)
        return first[0]
