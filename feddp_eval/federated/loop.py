"""The FedAvg round loop, written once: clients through :class:`ClientDefense`, the server through an
:class:`Aggregator`, both built by the defense's :class:`TrainingHooks`.

This is the ``local`` engine (:mod:`feddp_eval.federated.engine`): every client runs in this process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from feddp_eval.config import ExperimentConfig, TrainConfig
from feddp_eval.data.sites import planned_sites
from feddp_eval.data.types import Site, TileSet
from feddp_eval.federated.aggregation import Aggregator, FedAvg
from feddp_eval.federated.capture import CaptureWriter
from feddp_eval.federated.client import (
    ClientResult,
    client_round,
    draws_poisson,
    round_train,
    steps_per_round,
)
from feddp_eval.federated.finite import require_finite
from feddp_eval.federated.hooks import ClientDefense, ClientPlan, TrainingHooks, Update, privacy_summary
from feddp_eval.federated.malicious import ModelModification
from feddp_eval.metrics.utility import ConfusionCounts, binarise, confusion_counts, pooled, utility_scores
from feddp_eval.seeding import generator

POOLED = "pooled"


@dataclass(frozen=True)
class RoundRecord:
    """What one round produced: per-client training rows and per-site evaluation rows."""

    round: int
    clients: list[dict[str, Any]]
    evaluation: list[dict[str, Any]]
    seconds: float

    @property
    def pooled(self) -> dict[str, Any]:
        """The pooled evaluation row; empty where the round was not evaluated (``train.evaluate``)."""
        return next((row for row in self.evaluation if row["site"] == POOLED), {})


@dataclass
class FedAvgResult:
    """The trained model, every round's records, and the defenses' state at the end.

    Attributes:
        clients: Each site's client defense (its accountant), by site index.
        aggregator: The server's aggregator (a server-side defense's accountant).
    """

    model: nn.Module
    clients: list[ClientDefense] = field(default_factory=list)
    aggregator: Aggregator = field(default_factory=FedAvg)
    rounds: list[RoundRecord] = field(default_factory=list)

    def privacy_summary(self) -> dict[str, Any]:
        """The run's guarantees, the clients' and the server's (see :func:`.hooks.privacy_summary`)."""
        records = [r for c in self.clients if (r := c.privacy_record()) is not None]
        return privacy_summary(records, server=self.aggregator.privacy_records())


def sample_clients(n_sites: int, fraction: float, gen: torch.Generator) -> list[int]:
    """Sorted indices of the sites taking part in a round (at least one)."""
    m = max(1, round(fraction * n_sites))
    return sorted(torch.randperm(n_sites, generator=gen)[:m].tolist())


@torch.no_grad()
def evaluate(model: nn.Module, tiles: TileSet, device: torch.device, batch_size: int = 64) -> ConfusionCounts:
    """Confusion counts of the binarised predictions over all pixels of ``tiles``."""
    model.eval()
    counts = ConfusionCounts()
    for start in range(0, len(tiles), batch_size):
        images = tiles.images[start : start + batch_size].to(device)
        masks = tiles.masks[start : start + batch_size].to(device)
        counts = counts + confusion_counts(binarise(model(images)), masks > 0.5)
    return counts


NON_FINITE_FIX = "training diverged: lower `train.lr`, `defense.noise` or `defense.clip`; no result was kept"


def client_plans(sites: Sequence[Site], train: TrainConfig) -> list[ClientPlan]:
    """What each site's defense may know in advance: its data size, steps, rounds and participation."""
    m = max(1, round(train.client_fraction * len(sites)))
    return [
        ClientPlan(
            i,
            len(s.train),
            train.batch_size,
            steps_per_round(len(s.train), train),
            train.rounds,
            m / len(sites),
        )
        for i, s in enumerate(sites)
    ]


@dataclass(frozen=True)
class FedAvgJob:
    """A training run as handed to an engine (:mod:`feddp_eval.federated.engine`).

    Attributes:
        sites: The clients' data, by site index.
        model: The initial global model; trained in place.
        train: Rounds, sampling and local training settings.
        seed: The experiment seed every random draw derives from.
        device: Where to train.
        hooks: The defense (its client sides and its aggregator wrapper).
        capture: Where the server records what it receives, if anywhere.
        on_round: Called with each round's record.
        malicious: A server that modifies the model it sends one client in one round.
    """

    sites: Sequence[Site]
    model: nn.Module
    train: TrainConfig
    seed: int
    device: torch.device
    hooks: TrainingHooks = field(default_factory=TrainingHooks)
    capture: CaptureWriter | None = None
    on_round: Callable[[RoundRecord], None] | None = None
    malicious: ModelModification | None = None


@dataclass(frozen=True)
class _Run:
    """A job and the defense's pieces built for it: one client side per site, the aggregator."""

    job: FedAvgJob
    clients: list[ClientDefense]
    aggregator: Aggregator


def run_fedavg(
    sites: Sequence[Site],
    model: nn.Module,
    train: TrainConfig,
    *,
    seed: int,
    device: torch.device,
    hooks: TrainingHooks | None = None,
    capture: CaptureWriter | None = None,
    on_round: Callable[[RoundRecord], None] | None = None,
    malicious: ModelModification | None = None,
) -> FedAvgResult:
    """Train ``model`` with FedAvg across ``sites`` in this process (see :func:`train_job`)."""
    job = FedAvgJob(sites, model, train, seed, device, hooks or TrainingHooks(), capture, on_round, malicious)
    return train_job(job)


def train_job(job: FedAvgJob) -> FedAvgResult:
    """Train ``job.model`` with FedAvg across ``job.sites``; the model is updated in place and returned.

    Each round: sample clients, send the global weights, train locally behind each client's
    defense, capture each released update, aggregate (by sample count, unless a server-side
    defense wraps the aggregator), and evaluate the new global model on every site's held-out
    tiles. A malicious server sends its target client a modified model in its target round,
    captures that update whole and aggregates only the global model's part of it.
    """
    job.model.to(job.device)
    plans = client_plans(job.sites, job.train)
    job.hooks.setup(job.model, plans)
    run = _Run(job, [job.hooks.client(p) for p in plans], job.hooks.wrap(FedAvg()))
    if job.capture:
        for i, site in enumerate(job.sites):
            job.capture.write_ground_truth(i, site.train)
    result = FedAvgResult(model=job.model, clients=run.clients, aggregator=run.aggregator)
    for round_index in range(1, job.train.rounds + 1):
        record = _round(run, round_index)
        result.rounds.append(record)
        if job.on_round:
            job.on_round(record)
    return result


def _round(run: _Run, round_index: int) -> RoundRecord:
    """Sample clients, collect their released updates, aggregate, and evaluate the new model."""
    start = time.perf_counter()
    job = run.job
    model, sites = job.model, job.sites
    global_weights = {name: p.detach().clone() for name, p in model.named_parameters()}
    if job.capture:
        job.capture.write_global(round_index, global_weights)
    released, weights, client_rows = [], [], []
    for i in sample_clients(
        len(sites), job.train.client_fraction, generator(job.seed, "clients", round_index)
    ):
        update, row = _client(run, round_index, i, global_weights)
        released.append(update)
        weights.append(float(len(sites[i].train)))
        client_rows.append(row)
    aggregate = run.aggregator.aggregate(released, weights, generator(job.seed, "aggregate", round_index))
    _load(model, {n: global_weights[n] + aggregate[n].to(job.device) for n in global_weights})
    require_finite(
        dict(model.named_parameters()),
        what=f"the global model after round {round_index}",
        fix=NON_FINITE_FIX,
    )
    evaluation = (
        _evaluate_sites(model, sites, job.device, round_index) if evaluates(job.train, round_index) else []
    )
    return RoundRecord(round_index, client_rows, evaluation, time.perf_counter() - start)


def evaluates(train: TrainConfig, round_index: int) -> bool:
    """Whether the global model is scored on the held-out tiles after ``round_index``
    (``train.evaluate``: every round, or the last one only)."""
    return train.evaluate == "every-round" or round_index == train.rounds


def _client(
    run: _Run, round_index: int, i: int, global_weights: dict[str, torch.Tensor]
) -> tuple[Update, dict[str, Any]]:
    """Client ``i``'s round: what the server aggregates from it, and its training row."""
    job = run.job
    _load(job.model, global_weights)
    site = job.sites[i]
    sent: nn.Module = job.model
    sent_weights = None
    if job.malicious and job.malicious.applies(round_index, i, list(job.sites)):
        sent = job.malicious.model_for(job.model, site, generator(job.seed, "malicious", round_index, i))
        sent_weights = {name: p.detach().clone() for name, p in sent.named_parameters()}
    train = round_train(job.train, round_index)  # the round's learning rate under the schedule
    answer = client_round(
        sent,
        site.train,
        train,
        defense=run.clients[i],
        device=job.device,
        seed=job.seed,
        round_index=round_index,
    )
    require_finite(
        answer.update,
        what=f"the update site {i} ({site.name}) released in round {round_index}",
        fix=NON_FINITE_FIX,
    )
    if job.capture:
        metadata = capture_metadata(site, train, job.hooks, answer.local.batches)
        if job.malicious is not None and sent_weights is not None:
            metadata["model"] = job.malicious.describe(site)
        job.capture.write_update(round_index, i, answer.update, metadata, global_weights=sent_weights)
    row = client_row(round_index, site, answer.local)
    if job.malicious is not None and sent_weights is not None:
        return job.malicious.server_part(answer.update), row
    return answer.update, row


def client_row(round_index: int, site: Site, local: ClientResult) -> dict[str, Any]:
    """One client's training row (``clients.csv``) for a round."""
    return {
        "round": round_index,
        "site": site.name,
        "n_samples": len(site.train),
        "local_steps": len(local.batches),
        "train_loss": local.mean_loss,
        "seconds": local.seconds,
    }


def _evaluate_sites(
    model: nn.Module, sites: Sequence[Site], device: torch.device, round_index: int
) -> list[dict[str, Any]]:
    return evaluation_rows(sites, [evaluate(model, site.test, device) for site in sites], round_index)


def evaluation_rows(
    sites: Sequence[Site], counts: Sequence[ConfusionCounts], round_index: int
) -> list[dict[str, Any]]:
    """Each site's utility rows (``metrics.csv``) from its confusion counts, and the pooled row."""
    rows = [
        {"round": round_index, "site": site.name, "n_tiles": len(site.test), **utility_scores(c)}
        for site, c in zip(sites, counts, strict=True)
    ]
    rows.append(
        {
            "round": round_index,
            "site": POOLED,
            "n_tiles": sum(len(s.test) for s in sites),
            **utility_scores(pooled(counts)),
        }
    )
    return rows


@torch.no_grad()
def _load(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        p.copy_(weights[name])


def capture_metadata(
    site: Site, train: TrainConfig, hooks: TrainingHooks, batches: list[list[int]]
) -> dict[str, Any]:
    """Everything the attacker may (by default) know about a client round, as JSON."""
    return {
        "site": site.name,
        "n_samples": len(site.train),
        "local_steps": len(batches),
        "batch_size": train.batch_size,
        "lr": train.lr,
        "optimizer": train.optimizer,
        "momentum": train.momentum if train.optimizer == "sgd" else None,
        "loss": {"name": "bce+soft-dice", "dice_weight": train.dice_weight},
        "poisson_sampling": draws_poisson(train, hooks.poisson_sampling),
        "defense": hooks.describe(),
        "batches": batches,
        "update": "local_weights_minus_global",
    }


# The loop owns client sampling, so it owns this refusal (checked before any training).
def sampling_problem(config: ExperimentConfig) -> str | None:
    """Why the target site takes no part in the target round (client sampling is seeded, so this
    is known before training), or ``None`` (also when the target cannot be resolved yet)."""
    t, a, d = config.train, config.attack, config.data
    if t.client_fraction >= 1 or not isinstance(a.target_round, int):  # a non-int: several rounds
        return None
    n, site = planned_sites(d), a.target_site
    if site < 0 and d.source == "synthetic":
        counts = list(d.train_tiles) if isinstance(d.train_tiles, tuple) else [d.train_tiles] * d.sites
        site = min(range(len(counts)), key=lambda i: (counts[i], i))
    if n is None or not 0 <= site < n:
        return None
    chosen = sample_clients(n, t.client_fraction, generator(config.seed, "clients", a.target_round))
    if site in chosen:
        return None
    return (
        f"site {site} takes no part in round {a.target_round} (`train.client_fraction` = "
        f"{t.client_fraction:g} samples sites {chosen}); pick another `attack.target_round` or "
        "`attack.target_site`"
    )
