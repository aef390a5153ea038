""":class:`CapturingStrategy`: what a curious Flower server receives, in this toolkit's capture format.

Wrap any Flower strategy at the outermost position, so the capture sees each reply before any
server-side clipping or noise (Flower's DP wrappers change the replies in place)::

    strategy = CapturingStrategy(DifferentialPrivacyServerSideFixedClipping(FedAvg(), ...), "runs/mine")

Each round it writes ``captures/round-NNNN/global.safetensors`` (the arrays sent), and per reply
``site-k.safetensors`` (``received − sent``, in the sent arrays' dtype) and ``site-k.json`` (the
metadata the client attached with :func:`capture_record`, plus round, site and file names), the
layout of :mod:`feddp_eval.federated.capture`; ``feddp-eval attack`` reads it unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from feddp_eval.federated.capture import CaptureWriter
from feddp_eval.flower.protocol import ARRAYS, CAPTURE
from feddp_eval.flower.records import difference, from_record, json_record, read_json_record


def capture_record(metadata: dict[str, Any]) -> ConfigRecord:
    """What a ClientApp attaches to its train reply (under ``feddp-capture``) for the capturing server.

    ``metadata``: what the attacker may know of the round (``n_samples``, ``batch_size``,
    ``local_steps``, ``batches`` (tile indices of each local step), ``lr``, ``optimizer``,
    ``momentum``, ``loss``; optionally ``site`` and ``site_index``), as
    :func:`feddp_eval.federated.loop.capture_metadata` writes it.
    """
    return json_record(metadata)


class CapturingStrategy(Strategy):
    """Records every train reply as the server receives it, then hands the replies to ``strategy``.

    Args:
        strategy: The strategy that really runs the rounds (FedAvg, a DP wrapper around it, ...).
        run_dir: The run directory the captures go into (``<run_dir>/captures``).
        arrayrecord_key: The key of the ArrayRecord in messages (Flower's default ``arrays``).

    A reply's site index is the ``site_index`` of its metadata; without one, the position of its
    node among the sorted node ids of the round it was sent in.
    """

    def __init__(self, strategy: Strategy, run_dir: str | Path, *, arrayrecord_key: str = ARRAYS) -> None:
        if not isinstance(strategy, Strategy):
            raise TypeError(f"`strategy` must be a flwr Strategy, but got {type(strategy).__name__}")
        self.strategy = strategy
        self.writer = CaptureWriter(run_dir)
        self.arrayrecord_key = arrayrecord_key
        self._sent: dict[int, dict[int, ArrayRecord]] = {}
        self._global: dict[int, ArrayRecord] = {}
        self._nodes: dict[int, list[int]] = {}

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        self.writer.write_global(server_round, from_record(arrays))
        self._global[server_round] = arrays
        self._nodes[server_round] = sorted(grid.get_node_ids())
        self._sent[server_round] = {
            m.metadata.dst_node_id: m.content.array_records[self.arrayrecord_key] for m in messages
        }
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)  # iterated twice: captured here, aggregated by the inner strategy
        sent = self._sent.pop(server_round, {})
        round_global = self._global.pop(server_round, ArrayRecord())
        nodes = self._nodes.pop(server_round, [])
        for reply in replies:
            if not reply.has_error():
                self._capture(server_round, reply, sent, round_global, nodes)
        return self.strategy.aggregate_train(server_round, replies)

    def _capture(
        self,
        server_round: int,
        reply: Message,
        sent: dict[int, ArrayRecord],
        round_global: ArrayRecord,
        nodes: list[int],
    ) -> None:
        """Write one reply: its update against what its node was sent, and its metadata."""
        node = reply.metadata.src_node_id
        given = sent[node]
        metadata = dict(read_json_record(reply.content, CAPTURE) or {})
        site = int(metadata.pop("site_index", nodes.index(node) if node in nodes else node))
        update = difference(reply.content.array_records[self.arrayrecord_key], given)
        # A node sent other weights than the round's global model (a malicious server) gets them saved.
        same = given is round_global or given.object_id == round_global.object_id
        own_global = None if same else from_record(given)
        self.writer.write_update(server_round, site, update, metadata, global_weights=own_global)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.strategy.summary()

    def __repr__(self) -> str:
        return f"CapturingStrategy({self.strategy!r}, run_dir={str(self.writer.run_dir)!r})"
