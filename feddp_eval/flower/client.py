"""The ``flower`` engine's ClientApp: one site's client, the same code as the ``local`` engine's.

Each message runs :func:`~feddp_eval.federated.client.client_round` behind the client's own
:class:`~feddp_eval.federated.hooks.ClientDefense`, whose accountant state lives in the node's
``Context.state`` (a JSON ConfigRecord) and keeps accumulating over every round the client takes
part in. A node's site is its ``partition-id`` node config (set by the Simulation Runtime, or by
``flower-supernode --node-config``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from feddp_eval.config import TrainConfig
from feddp_eval.data.types import Site, TileSet
from feddp_eval.federated.client import client_round, round_train
from feddp_eval.federated.finite import require_finite
from feddp_eval.federated.hooks import ClientDefense, ClientPlan, TrainingHooks
from feddp_eval.federated.loop import NON_FINITE_FIX, capture_metadata, client_row, evaluate
from feddp_eval.flower.capturing import capture_record
from feddp_eval.flower.protocol import (
    ARRAYS,
    CAPTURE,
    CONFIG,
    METRICS,
    NUM_EXAMPLES,
    PRIVACY,
    ROW,
    SITE_INDEX,
    STATE,
    handshake,
    integer,
    site_index,
)
from feddp_eval.flower.records import (
    WIRE_DTYPE,
    from_record,
    json_record,
    metric_record,
    read_json_record,
    to_record,
)
from feddp_eval.io import load_tensors, read_json, save_tensors, write_json


@dataclass(frozen=True)
class ClientSpec:
    """What every client of a run shares (picklable: Ray ships it to the simulated nodes).

    Attributes:
        model: The architecture (any weights; each message loads the global ones).
        train: Local training settings.
        hooks: The run's defense, already set up (:meth:`TrainingHooks.setup`).
        plans: Each site's :class:`ClientPlan`, by site index.
        seed: The experiment seed.
        device: Where clients train (``cpu``, ``cuda``).
        load_site: A node's own site, from its index (``functools.partial(read_site, folder)`` in
            simulation: each node reads only its own tiles).
        threads: Torch threads a node computes with (``None``: the node's own default). A simulated
            run passes the driver's count, so float sums, and so the numbers, match the ``local``
            engine at the same thread count (Ray would otherwise start workers with one thread).
    """

    model: nn.Module
    train: TrainConfig
    hooks: TrainingHooks
    plans: list[ClientPlan]
    seed: int
    device: str
    load_site: Callable[[int], Site]
    threads: int | None = None


def write_sites(sites: list[Site], data_dir: Path) -> None:
    """Each site's tiles as ``site-k.safetensors`` (+ its name in ``site-k.json``) for its client."""
    for i, site in enumerate(sites):
        tensors = {
            "train_images": site.train.images,
            "train_masks": site.train.masks,
            "test_images": site.test.images,
            "test_masks": site.test.masks,
        }
        save_tensors(data_dir / f"site-{i}.safetensors", tensors)
        write_json(data_dir / f"site-{i}.json", {"name": site.name})


def read_site(data_dir: Path, i: int) -> Site:
    """Site ``i`` as :func:`write_sites` left it."""
    tensors = load_tensors(data_dir / f"site-{i}.safetensors")
    name = str(read_json(data_dir / f"site-{i}.json")["name"])
    train = TileSet(tensors["train_images"], tensors["train_masks"])
    return Site(name, train, TileSet(tensors["test_images"], tensors["test_masks"]))


def client_defense(spec: ClientSpec, context: Context) -> ClientDefense:
    """The node's client defense, its accountant restored from ``context.state``."""
    defense = spec.hooks.client(spec.plans[site_index(context)])
    state = read_json_record(context.state, STATE)
    if state is not None:
        defense.load_state_dict(state)
    return defense


def train(spec: ClientSpec, msg: Message, context: Context) -> Message:
    """One round of this node's client: train, release, reply with local weights = global + update."""
    _threads(spec)
    i = site_index(context)
    site = spec.load_site(i)
    round_index = integer(msg.content.config_records[CONFIG]["server-round"], what="server-round")
    defense = client_defense(spec, context)
    sent = from_record(msg.content.array_records[ARRAYS])
    model = _model(spec, sent)
    train = round_train(spec.train, round_index)  # the round's learning rate under the schedule
    answer = client_round(
        model,
        site.train,
        train,
        defense=defense,
        device=torch.device(spec.device),
        seed=spec.seed,
        round_index=round_index,
    )
    what = f"the update site {i} ({site.name}) released in round {round_index}"
    require_finite(answer.update, what=what, fix=NON_FINITE_FIX)
    context.state[STATE] = json_record(defense.state_dict())
    # float64 on the wire: global + update is exact, so the server's received − sent is the update.
    local = {n: sent[n].to(WIRE_DTYPE) + answer.update[n].cpu().to(WIRE_DTYPE) for n in sent}
    record = defense.privacy_record()
    epsilon = record.epsilon if record is not None and record.epsilon is not None else math.nan
    metrics = {NUM_EXAMPLES: len(site.train), SITE_INDEX: i, "epsilon": float(epsilon)}
    metadata = {**capture_metadata(site, train, spec.hooks, answer.local.batches), "site_index": i}
    content = RecordDict(
        {
            ARRAYS: to_record(local),
            METRICS: metric_record(metrics),
            CAPTURE: capture_record(metadata),
            ROW: json_record(client_row(round_index, site, answer.local)),
            PRIVACY: json_record(None if record is None else record.to_dict()),
        }
    )
    return Message(content=content, reply_to=msg)


def evaluate_site(spec: ClientSpec, msg: Message, context: Context) -> Message:
    """Confusion counts of the received global model on this node's held-out tiles, and the
    client's guarantee so far (every node evaluates every round, so the last round's replies hold
    every client's final guarantee, sampled or not)."""
    _threads(spec)
    i = site_index(context)
    site = spec.load_site(i)
    model = _model(spec, from_record(msg.content.array_records[ARRAYS]))
    counts = evaluate(model, site.test, torch.device(spec.device))
    metrics = {"tp": counts.tp, "fp": counts.fp, "fn": counts.fn, "tn": counts.tn}
    metrics |= {NUM_EXAMPLES: len(site.test), SITE_INDEX: i}
    record = client_defense(spec, context).privacy_record()
    content = RecordDict(
        {
            METRICS: metric_record(metrics),
            PRIVACY: json_record(None if record is None else record.to_dict()),
        }
    )
    return Message(content=content, reply_to=msg)


def _threads(spec: ClientSpec) -> None:
    if spec.threads is not None and torch.get_num_threads() != spec.threads:
        torch.set_num_threads(spec.threads)


def build_client_app(spec: ClientSpec, *, mods: list[Any] | None = None) -> ClientApp:
    """The ClientApp every simulated (or deployed) node of a run runs; ``mods``: Flower client mods."""
    app = ClientApp(mods=mods or [])

    @app.train()
    def _train(msg: Message, context: Context) -> Message:
        return train(spec, msg, context)

    @app.evaluate()
    def _evaluate(msg: Message, context: Context) -> Message:
        return evaluate_site(spec, msg, context)

    app.query()(handshake)

    return app


def _model(spec: ClientSpec, weights: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of the architecture on the client's device holding ``weights``."""
    model = copy.deepcopy(spec.model).to(spec.device)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(weights[name])
    return model
