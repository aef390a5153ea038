"""Engines: what runs the federated rounds, chosen by ``[train] engine``.

An engine takes a :class:`~feddp_eval.federated.loop.FedAvgJob` (the sites, the initial model,
the settings and the defense's :class:`~feddp_eval.federated.hooks.TrainingHooks`), runs every
round (capturing each released update when asked), and returns a
:class:`~feddp_eval.federated.loop.FedAvgResult`. ``local`` runs every client in this process
(:func:`~feddp_eval.federated.loop.train_job`). Clients are built from the hooks one per site
(:meth:`TrainingHooks.client`), so another engine can run each one where its data lives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from feddp_eval.federated.loop import FedAvgJob, FedAvgResult, train_job
from feddp_eval.registry import Registry


class Engine(ABC):
    """Runs FedAvg training; one registered subclass per way of running the clients."""

    name: ClassVar[str]

    @abstractmethod
    def run(self, job: FedAvgJob) -> FedAvgResult:
        """Train ``job.model`` in place across ``job.sites`` for ``job.train.rounds`` rounds."""


ENGINES: Registry[Engine] = Registry("engine")


@ENGINES.register("local")
class LocalEngine(Engine):
    """Every client in this process, one after the other: the reference loop."""

    def run(self, job: FedAvgJob) -> FedAvgResult:
        return train_job(job)


def build_engine(name: str) -> Engine:
    """The engine registered as ``name``; an unknown name is a ConfigError listing the known ones."""
    return ENGINES.create(name)
