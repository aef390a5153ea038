"""The FedAvg round loop, written once; defenses enter only through :class:`TrainingHooks`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from feddp_eval.config import TrainConfig
from feddp_eval.data.types import Site, TileSet
from feddp_eval.federated.capture import CaptureWriter
from feddp_eval.federated.client import local_schedule, steps_per_round, train_client
from feddp_eval.federated.hooks import ClientPlan, TrainingHooks
from feddp_eval.federated.malicious import ImprintServer
from feddp_eval.metrics.utility import ConfusionCounts, binarise, confusion_counts, pooled, utility_scores
from feddp_eval.safety import require_finite
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
        return next(row for row in self.evaluation if row["site"] == POOLED)


@dataclass
class FedAvgResult:
    model: nn.Module
    rounds: list[RoundRecord] = field(default_factory=list)


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


_NON_FINITE_FIX = "training diverged: lower `train.lr`, `defense.noise` or `defense.clip`; no result was kept"


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
    malicious: ImprintServer | None = None,
) -> FedAvgResult:
    """Train ``model`` with FedAvg across ``sites``; the model is updated in place and returned.

    Each round: sample clients, send the global weights, train locally behind the
    defense's hooks, capture each released update, aggregate by sample count, and
    evaluate the new global model on every site's held-out tiles. A ``malicious`` server
    sends its target client a modified model in its target round, captures that
    update whole and aggregates only the U-Net's part of it.
    """
    hooks = hooks or TrainingHooks()
    model.to(device)
    m = max(1, round(train.client_fraction * len(sites)))
    plans = [
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
    hooks.setup(model, plans)
    if capture:
        for i, site in enumerate(sites):
            capture.write_ground_truth(i, site.train)
    result = FedAvgResult(model=model)
    for round_index in range(1, train.rounds + 1):
        start = time.perf_counter()
        global_weights = {name: p.detach().clone() for name, p in model.named_parameters()}
        if capture:
            capture.write_global(round_index, global_weights)
        released, weights, client_rows = [], [], []
        for i in sample_clients(len(sites), train.client_fraction, generator(seed, "clients", round_index)):
            _load(model, global_weights)
            site = sites[i]
            sent: nn.Module = model
            sent_weights = None
            if malicious and malicious.applies(round_index, i, list(sites)):
                sent = malicious.model_for(model, site, generator(seed, "malicious", round_index, i))
                sent_weights = {name: p.detach().clone() for name, p in sent.named_parameters()}
            batches = local_schedule(
                len(site.train),
                train,
                generator=generator(seed, "schedule", round_index, i),
                poisson=hooks.poisson_sampling,
            )
            local = train_client(
                sent,
                site.train,
                train,
                client_id=i,
                batches=batches,
                hooks=hooks,
                device=device,
                generator=generator(seed, "local-noise", round_index, i),
            )
            update = hooks.release(i, local.update, generator(seed, "release", round_index, i))
            require_finite(
                update,
                what=f"the update site {i} ({site.name}) released in round {round_index}",
                fix=_NON_FINITE_FIX,
            )
            weights.append(float(len(site.train)))
            if capture:
                metadata = _metadata(site, train, hooks, batches)
                if malicious is not None and sent_weights is not None:
                    metadata["model"] = malicious.describe(site)
                capture.write_update(round_index, i, update, metadata, global_weights=sent_weights)
            released.append(update if sent_weights is None else ImprintServer.server_part(update))
            client_rows.append(
                {
                    "round": round_index,
                    "site": site.name,
                    "n_samples": len(site.train),
                    "local_steps": len(batches),
                    "train_loss": local.mean_loss,
                    "seconds": local.seconds,
                }
            )
        aggregate = hooks.aggregate(released, weights, generator(seed, "aggregate", round_index))
        _load(model, {n: global_weights[n] + aggregate[n].to(device) for n in global_weights})
        require_finite(
            dict(model.named_parameters()),
            what=f"the global model after round {round_index}",
            fix=_NON_FINITE_FIX,
        )
        evaluation = _evaluate_sites(model, sites, device, round_index)
        record = RoundRecord(round_index, client_rows, evaluation, time.perf_counter() - start)
        result.rounds.append(record)
        if on_round:
            on_round(record)
    return result


def _evaluate_sites(
    model: nn.Module, sites: Sequence[Site], device: torch.device, round_index: int
) -> list[dict[str, Any]]:
    counts = [evaluate(model, site.test, device) for site in sites]
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


def _metadata(
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
        "poisson_sampling": hooks.poisson_sampling,
        "defense": hooks.describe(),
        "batches": batches,
        "update": "local_weights_minus_global",
    }
