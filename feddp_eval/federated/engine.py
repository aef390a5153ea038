"""Engines: what runs the federated rounds, chosen by ``[train] engine``.

An engine takes a :class:`~feddp_eval.federated.loop.FedAvgJob` (the sites, the initial model,
the settings and the defense's :class:`~feddp_eval.federated.hooks.TrainingHooks`), runs every
round (capturing each released update when asked), and returns a
:class:`~feddp_eval.federated.loop.FedAvgResult`. ``local`` runs every client in this process
(:func:`~feddp_eval.federated.loop.train_job`); ``flower`` runs each client as a Flower ClientApp on
the Simulation Runtime (:mod:`feddp_eval.flower`). Clients are built from the hooks one per site
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


@ENGINES.register("flower")
class FlowerEngine(Engine):
    """The same clients as Flower ClientApps on Flower's Simulation Runtime, one SuperNode per site.

    Flower is imported only when a run starts (``pip install 'feddp-eval[flower]'``), so the
    registry, the ``local`` path and ``--help`` never import it. See :mod:`feddp_eval.flower`.
    """

    def run(self, job: FedAvgJob) -> FedAvgResult:
        from feddp_eval.flower.engine import run_job

        return run_job(job)


def build_engine(name: str) -> Engine:
    """The engine registered as ``name``; an unknown name is a ConfigError listing the known ones."""
    return ENGINES.create(name)
