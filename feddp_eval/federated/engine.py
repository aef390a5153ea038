"""Engines: what runs the federated rounds, chosen by ``[train] engine``.

An engine takes the sites, the initial model and the defense's
:class:`~feddp_eval.federated.hooks.TrainingHooks`, runs every round (capturing each
released update when asked), and returns a :class:`~feddp_eval.federated.loop.FedAvgResult`.
``local`` runs every client in this process (:func:`~feddp_eval.federated.loop.run_fedavg`).
The same seed gives the same numbers on every engine that can reproduce the local draws.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import nn

from feddp_eval.config import TrainConfig
from feddp_eval.data.types import Site
from feddp_eval.federated.capture import CaptureWriter
from feddp_eval.federated.hooks import TrainingHooks
from feddp_eval.federated.loop import FedAvgResult, RoundRecord, run_fedavg
from feddp_eval.federated.malicious import ImprintServer
from feddp_eval.registry import Registry


class Engine(ABC):
    """Runs FedAvg training; one registered subclass per way of running the clients."""

    name: ClassVar[str]

    @abstractmethod
    def run(
        self,
        sites: Sequence[Site],
        model: nn.Module,
        train: TrainConfig,
        *,
        seed: int,
        device: torch.device,
        hooks: TrainingHooks | None = None,
        capture: CaptureWriter | None = None,
        on_round: Callable[[RoundRecord], None] | None = None,
        malicious: ImprintServer | None = None,
    ) -> FedAvgResult:
        """Train ``model`` in place across ``sites`` for ``train.rounds`` rounds behind ``hooks``."""


ENGINES: Registry[Engine] = Registry("engine")


@ENGINES.register("local")
class LocalEngine(Engine):
    """Every client in this process, one after the other: the reference loop."""

    def run(
        self,
        sites: Sequence[Site],
        model: nn.Module,
        train: TrainConfig,
        *,
        seed: int,
        device: torch.device,
        hooks: TrainingHooks | None = None,
        capture: CaptureWriter | None = None,
        on_round: Callable[[RoundRecord], None] | None = None,
        malicious: ImprintServer | None = None,
    ) -> FedAvgResult:
        return run_fedavg(
            sites,
            model,
            train,
            seed=seed,
            device=device,
            hooks=hooks,
            capture=capture,
            on_round=on_round,
            malicious=malicious,
        )


def build_engine(name: str) -> Engine:
    """The engine registered as ``name``; an unknown name is a ConfigError listing the known ones."""
    return ENGINES.create(name)
