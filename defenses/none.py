"""The undefended reference arm."""

from __future__ import annotations

from torch import Tensor

from defenses.base import DEFENSES, Defense, SimulatedRelease
from feddp_eval.config import DefenseConfig
from feddp_eval.errors import ConfigError


@DEFENSES.register("none")
class NoDefense(Defense):
    """Plain FedAvg: raw updates, no noise, no formal guarantee."""

    summary = "no defense: raw updates reach the server (the reference arm)"
    protects_against_server = False
    protects = "protects nothing"
    colour = "#000000"
    marker = "s"
    report_order = 0

    def __init__(self, config: DefenseConfig) -> None:
        super().__init__(config)
        if config.noise > 0 or config.target_epsilon is not None:
            raise ConfigError(
                f"defense 'none' adds no noise, but got noise={config.noise}, target_epsilon="
                f"{config.target_epsilon}; choose a DP defense (dp-sgd, local-dp, central-dp) or drop them"
            )

    @classmethod
    def release_simulated(cls, updates: Tensor, release: SimulatedRelease) -> Tensor:
        return updates  # released as trained
