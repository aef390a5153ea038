"""One client's local training round: a function of (global weights, local data, client defense).

Kept free of server state so the same function can later run inside a Flower
``ClientApp``: :func:`client_round` takes the global model, the site's tiles, the
local hyper-parameters and the client's :class:`~feddp_eval.federated.hooks.ClientDefense`
(whose accountant it advances), and returns the released update with the exact
sample indices of every local step.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from feddp_eval.config import TrainConfig
from feddp_eval.data.types import TileSet
from feddp_eval.federated.hooks import ClientDefense, Update
from feddp_eval.models.loss import segmentation_loss
from feddp_eval.seeding import generator as seeded


@dataclass(frozen=True)
class ClientResult:
    """What local training produced, before the defense's release step.

    Attributes:
        update: Raw local change ``local − global`` per parameter.
        batches: Sample indices (into the site's training tiles) of every local step.
        losses: Training loss of every local step.
        seconds: Wall-clock time of the local training.
    """

    update: Update
    batches: list[list[int]]
    losses: list[float]
    seconds: float

    @property
    def mean_loss(self) -> float:
        finite = [x for x in self.losses if math.isfinite(x)]
        return sum(finite) / len(finite) if finite else float("nan")


def steps_per_round(n_samples: int, train: TrainConfig) -> int:
    """Local optimizer steps a client with ``n_samples`` tiles takes each round."""
    if train.local_steps:
        return train.local_steps
    return train.local_epochs * math.ceil(n_samples / train.batch_size)


def local_schedule(
    n_samples: int, train: TrainConfig, *, generator: torch.Generator, poisson: bool = False
) -> list[list[int]]:
    """Sample indices of each local step.

    Without Poisson sampling: shuffled passes over the data cut into batches of
    ``batch_size`` (the last batch of a pass may be smaller), for ``local_epochs``
    passes or exactly ``local_steps`` steps. With Poisson sampling (DP-SGD's
    analysis assumes it): each step includes every sample independently with
    probability ``batch_size / n_samples``; a step may be empty.
    """
    steps = steps_per_round(n_samples, train)
    if poisson:
        rate = min(1.0, train.batch_size / n_samples)
        draws = torch.rand(steps, n_samples, generator=generator) < rate
        return [row.nonzero().flatten().tolist() for row in draws]
    batches: list[list[int]] = []
    while len(batches) < steps:
        order = torch.randperm(n_samples, generator=generator).tolist()
        for start in range(0, n_samples, train.batch_size):
            batches.append(order[start : start + train.batch_size])
    return batches[:steps]


def round_schedule(
    n_samples: int, train: TrainConfig, *, seed: int, round_index: int, client: int, poisson: bool
) -> list[list[int]]:
    """Client ``client``'s batches in round ``round_index`` (:func:`local_schedule`), drawn from the
    seed, the round and the client alone: so they are known before training (an attack's preflight
    replays them)."""
    generator = seeded(seed, "schedule", round_index, client)
    return local_schedule(n_samples, train, generator=generator, poisson=poisson)


def draws_poisson(train: TrainConfig, defense_poisson: bool) -> bool:
    """Whether clients Poisson-sample their batches: the defense asks for it (``dp-sgd``), or
    ``[train] sampling = "poisson"`` asks it of every client."""
    return defense_poisson or train.sampling == "poisson"


def round_train(train: TrainConfig, round_index: int) -> TrainConfig:
    """``train`` with round ``round_index``'s learning rate under ``train.lr_schedule`` (1-based)."""
    if train.lr_schedule == "constant":
        return train
    share = (round_index - 1) / max(train.rounds, 1)
    return dataclasses.replace(train, lr=train.lr * 0.5 * (1.0 + math.cos(math.pi * share)))


def make_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """The client's local optimizer, fresh every round (no state crosses rounds)."""
    if train.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=train.lr, momentum=train.momentum)
    return torch.optim.Adam(model.parameters(), lr=train.lr)


def train_client(
    model: nn.Module,
    tiles: TileSet,
    train: TrainConfig,
    *,
    batches: list[list[int]],
    defense: ClientDefense,
    device: torch.device,
    generator: torch.Generator,
) -> ClientResult:
    """Train ``model`` (holding the global weights, on ``device``) in place on ``batches`` of ``tiles``.

    ``generator`` feeds ``defense``'s local noise (DP-SGD). Returns the raw
    update; the model ends holding the local weights.
    """
    start = time.perf_counter()
    global_params = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = make_optimizer(model, train)
    losses: list[float] = []
    model.train()
    with defense.local_training(model, optimizer, generator) as (local_model, local_optimizer):
        for batch in batches:
            local_optimizer.zero_grad(set_to_none=True)
            if not batch:  # Poisson sampling drew nobody: the step still happens (on DP's noise alone).
                defense.empty_step(local_model, local_optimizer)
                losses.append(float("nan"))
                continue
            images, masks = _batch(tiles, batch, device)
            loss = segmentation_loss(local_model(images), masks, dice_weight=train.dice_weight)
            loss.backward()
            local_optimizer.step()
            losses.append(float(loss.detach()))
    update = {name: p.detach() - global_params[name] for name, p in model.named_parameters()}
    return ClientResult(update=update, batches=batches, losses=losses, seconds=time.perf_counter() - start)


@dataclass(frozen=True)
class ClientRound:
    """What a client sends back from one round.

    Attributes:
        update: The update as released (after the client's defense), what the server receives.
        local: The local training behind it (raw update, batches, losses, time).
    """

    update: Update
    local: ClientResult


def client_round(
    model: nn.Module,
    tiles: TileSet,
    train: TrainConfig,
    *,
    defense: ClientDefense,
    device: torch.device,
    seed: int,
    round_index: int,
) -> ClientRound:
    """One client's round: draw its batches, train ``model`` on ``tiles`` behind ``defense``, release.

    Every random draw comes from ``seed``, the round and the client (``defense.plan.client_id``),
    so the same client gives the same update wherever it runs.
    """
    i = defense.plan.client_id
    batches = round_schedule(
        len(tiles),
        train,
        seed=seed,
        round_index=round_index,
        client=i,
        poisson=draws_poisson(train, defense.poisson_sampling),
    )
    local = train_client(
        model,
        tiles,
        train,
        batches=batches,
        defense=defense,
        device=device,
        generator=seeded(seed, "local-noise", round_index, i),
    )
    update = defense.release(local.update, seeded(seed, "release", round_index, i))
    return ClientRound(update=update, local=local)


def _batch(tiles: TileSet, indices: list[int], device: torch.device) -> tuple[Tensor, Tensor]:
    index = torch.as_tensor(indices, dtype=torch.long)
    return tiles.images[index].to(device), tiles.masks[index].to(device)
