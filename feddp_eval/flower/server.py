"""The ``flower`` engine's server: the ``local`` engine's round loop as a Flower strategy and ServerApp.

:class:`RunStrategy` samples clients with the run's seeded generator, aggregates the released
updates (``received − sent``) with the defense's aggregator (FedAvg, or central DP wrapping it),
and evaluates every round's global model on every site. :func:`serve` drives it through a Grid,
behind a :class:`~feddp_eval.flower.capturing.CapturingStrategy` when the run captures.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from feddp_eval.errors import FeddpError
from feddp_eval.federated.aggregation import Aggregator, FedAvg
from feddp_eval.federated.finite import require_finite
from feddp_eval.federated.hooks import ClientDefense, ClientPlan, PrivacyRecord
from feddp_eval.federated.loop import (
    NON_FINITE_FIX,
    FedAvgJob,
    FedAvgResult,
    RoundRecord,
    evaluates,
    evaluation_rows,
    sample_clients,
)
from feddp_eval.flower.capturing import CapturingStrategy
from feddp_eval.flower.protocol import ARRAYS, CONFIG, METRICS, PRIVACY, ROW, SITE_INDEX, integer
from feddp_eval.flower.records import difference, from_record, read_json_record, to_record
from feddp_eval.metrics.utility import ConfusionCounts
from feddp_eval.seeding import generator

TIMEOUT_S = 3600.0  # for one round's replies
CONNECT_TIMEOUT_S = 120.0  # for every site's SuperNode to connect


class ClientFailed(FeddpError):
    """A client's reply carried an error instead of a result."""


class RunStrategy(Strategy):
    """The ``local`` engine's server, message by message.

    Args:
        job: The run (sites, settings, seed).
        aggregator: The defense's aggregator (``hooks.wrap(FedAvg())``).
        nodes: The node id serving each site, by site index.
    """

    def __init__(self, job: FedAvgJob, aggregator: Aggregator, nodes: list[int]) -> None:
        self.job = job
        self.aggregator = aggregator
        self.nodes = nodes
        self.client_rows: dict[int, list[dict[str, Any]]] = {}
        self.evaluation: dict[int, list[dict[str, Any]]] = {}
        self.privacy: dict[int, PrivacyRecord | None] = {}
        self._sent = ArrayRecord()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._sent = arrays
        gen = generator(self.job.seed, "clients", server_round)
        sampled = sample_clients(len(self.job.sites), self.job.train.client_fraction, gen)
        return _messages(arrays, [self.nodes[i] for i in sampled], MessageType.TRAIN, server_round)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        ordered = _by_site(replies)
        updates = [difference(r.content.array_records[ARRAYS], self._sent) for r in ordered]
        weights = [float(len(self.job.sites[_site(r)].train)) for r in ordered]
        aggregate = self.aggregator.aggregate(
            updates, weights, generator(self.job.seed, "aggregate", server_round)
        )
        start = from_record(self._sent)
        new = {n: start[n] + aggregate[n].to(start[n].device) for n in start}
        what = f"the global model after round {server_round}"
        require_finite(new, what=what, fix=NON_FINITE_FIX)
        self.client_rows[server_round] = [read_json_record(r.content, ROW) for r in ordered]
        return to_record(new), MetricRecord({"clients": len(ordered)})

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return _messages(arrays, self.nodes, MessageType.EVALUATE, server_round)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        ordered = _by_site(replies)
        counts = [_counts(r) for r in ordered]
        self.evaluation[server_round] = evaluation_rows(self.job.sites, counts, server_round)
        for reply in ordered:
            raw = read_json_record(reply.content, PRIVACY)
            self.privacy[_site(reply)] = None if raw is None else PrivacyRecord(**raw)
        return MetricRecord({k: v for k, v in self.evaluation[server_round][-1].items() if k != "site"})

    def summary(self) -> None:
        """Nothing to log: the run's settings are in its manifest."""


class ReportedClient(ClientDefense):
    """A client's guarantee as its node reported it (the server holds no client state)."""

    def __init__(self, record: PrivacyRecord | None, plan: ClientPlan) -> None:
        super().__init__(plan)
        self.record = record

    def privacy_record(self) -> PrivacyRecord | None:
        return self.record


def serve(grid: Grid, job: FedAvgJob, plans: list[ClientPlan]) -> FedAvgResult:
    """Run every round of ``job`` through ``grid``; the final weights are loaded into ``job.model``."""
    nodes = connect(grid, len(job.sites))
    run = RunStrategy(job, job.hooks.wrap(FedAvg()), nodes)
    strategy: Strategy = CapturingStrategy(run, job.capture.run_dir) if job.capture else run
    arrays = to_record({n: p.detach().cpu() for n, p in job.model.named_parameters()})
    result = FedAvgResult(model=job.model, aggregator=run.aggregator)
    for r in range(1, job.train.rounds + 1):
        start = time.perf_counter()
        replies = grid.send_and_receive(
            strategy.configure_train(r, arrays, ConfigRecord(), grid), timeout=TIMEOUT_S
        )
        new, _ = strategy.aggregate_train(r, replies)
        arrays = new if new is not None else arrays
        if evaluates(job.train, r):  # the nodes' privacy records come back with the evaluation
            evaluated = grid.send_and_receive(
                strategy.configure_evaluate(r, arrays, ConfigRecord(), grid), timeout=TIMEOUT_S
            )
            strategy.aggregate_evaluate(r, evaluated)
        record = RoundRecord(r, run.client_rows[r], run.evaluation.get(r, []), time.perf_counter() - start)
        result.rounds.append(record)
        if job.on_round:
            job.on_round(record)
    result.clients = [ReportedClient(run.privacy.get(i), plans[i]) for i in range(len(nodes))]
    final = from_record(arrays)
    with torch.no_grad():
        for name, p in job.model.named_parameters():
            p.copy_(final[name])
    return result


def connect(grid: Grid, n_sites: int, *, timeout: float = CONNECT_TIMEOUT_S) -> list[int]:
    """The node id serving each site, by site index, once ``n_sites`` nodes are connected.

    Raises:
        ClientFailed: Fewer nodes connected within ``timeout`` seconds, or two serve one site.
    """
    deadline = time.monotonic() + timeout
    while len(found := list(grid.get_node_ids())) < n_sites and time.monotonic() < deadline:
        time.sleep(0.2)
    sites = {site: node for node, site in _sites(grid, found).items()}
    if sorted(sites) != list(range(n_sites)):
        raise ClientFailed(
            f"{n_sites} sites need one SuperNode each (partition-id 0..{n_sites - 1}), but within "
            f"{timeout:g} s the connected nodes served sites {sorted(sites)}; start the missing ones"
        )
    return [sites[i] for i in range(n_sites)]


def _sites(grid: Grid, nodes: list[int]) -> dict[int, int]:
    """``{node id: site index}`` of the nodes, as each reports it."""
    replies = grid.send_and_receive(_messages(ArrayRecord(), nodes, MessageType.QUERY, 0), timeout=TIMEOUT_S)
    return {reply.metadata.src_node_id: _site(reply) for reply in _checked(replies)}


def _messages(arrays: ArrayRecord, nodes: list[int], kind: str, server_round: int) -> list[Message]:
    content = RecordDict({ARRAYS: arrays, CONFIG: ConfigRecord({"server-round": server_round})})
    return [Message(content=content, dst_node_id=node, message_type=kind) for node in nodes]


def _checked(replies: Iterable[Message]) -> list[Message]:
    replies = list(replies)
    for reply in replies:
        if reply.has_error():
            raise ClientFailed(
                f"node {reply.metadata.src_node_id} failed: {reply.error.reason}; see its log for the cause"
            )
    return replies


def _site(reply: Message) -> int:
    return integer(reply.content.metric_records[METRICS][SITE_INDEX], what=SITE_INDEX)


def _by_site(replies: Iterable[Message]) -> list[Message]:
    """The replies in site order (the ``local`` engine's order, so sums add up alike)."""
    return sorted(_checked(replies), key=_site)


def _counts(reply: Message) -> ConfusionCounts:
    m = reply.content.metric_records[METRICS]
    tp, fp, fn, tn = (integer(m[k], what=k) for k in ("tp", "fp", "fn", "tn"))
    return ConfusionCounts(tp, fp, fn, tn)
