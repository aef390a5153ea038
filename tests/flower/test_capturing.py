"""CapturingStrategy on its own (no Ray): outermost, it records the replies before Flower's DP
wrapper clips them, in the capture format, with the site each client names or its node's rank."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp.strategy import FedAvg

from feddp_eval.config import DefenseConfig
from feddp_eval.federated.capture import list_captures
from feddp_eval.flower import CapturingStrategy, capture_record
from feddp_eval.flower.dp import EQUAL_WEIGHT, central_dp_strategy
from feddp_eval.flower.protocol import ARRAYS, CAPTURE, METRICS, NUM_EXAMPLES
from feddp_eval.flower.records import from_record, metric_record, to_record
from feddp_eval.io import load_tensors

NODES = [31, 7, 19]  # node ids; sorted, their ranks are 1, 2, 0
SEEN = {
    "n_samples": 2,
    "batch_size": 2,
    "local_steps": 1,
    "batches": [[0, 1]],
    "lr": 0.1,
    "optimizer": "sgd",
    "momentum": 0.0,
    "loss": {"name": "bce+soft-dice", "dice_weight": 1.0},
}


class Grid:
    """The part of flwr's Grid a strategy's configure step uses."""

    def get_node_ids(self) -> list[int]:
        return NODES


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    from flwr.supercore.task_identity import TaskIdentity

    for attribute in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attribute, 1)


def _reply(sent: Message, update: dict[str, torch.Tensor], metadata: dict[str, Any] | None) -> Message:
    start = from_record(sent.content.array_records[ARRAYS])
    local = {n: start[n] + update[n] for n in start}  # float32, as a plain Flower client sends
    content: dict[str, Any] = {
        ARRAYS: to_record(local),
        METRICS: metric_record({NUM_EXAMPLES: 2, EQUAL_WEIGHT: 1}),
    }
    if metadata is not None:
        content[CAPTURE] = capture_record(metadata)
    return Message(RecordDict(content), reply_to=sent)


def test_outermost_it_captures_what_the_dp_wrapper_then_clips(tmp_path: Path) -> None:
    start = {"w": torch.linspace(-1, 1, 12).reshape(3, 4), "b": torch.zeros(3)}
    inner = central_dp_strategy(DefenseConfig(name="central-dp", noise=0.0, clip=0.01), num_sampled_clients=3)
    strategy = CapturingStrategy(inner, tmp_path)
    sent = list(strategy.configure_train(1, to_record(start), ConfigRecord(), Grid()))  # type: ignore[arg-type]
    assert sorted(m.metadata.dst_node_id for m in sent) == sorted(NODES)
    gen = torch.Generator().manual_seed(0)
    updates = [{n: torch.randn(t.shape, generator=gen) for n, t in start.items()} for _ in sent]
    # Node 31 names its site (5); the others do not: their site is their node's rank (7 → 0, 19 → 1).
    metadata = [{**SEEN, "site_index": 5} if m.metadata.dst_node_id == 31 else SEEN for m in sent]
    replies = [_reply(m, u, meta) for m, u, meta in zip(sent, updates, metadata, strict=True)]
    arrays, _ = strategy.aggregate_train(1, replies)

    captures = {c.site_index: c for c in list_captures(tmp_path)}
    assert sorted(captures) == [0, 1, 5]
    site_of = {31: 5, 7: 0, 19: 1}
    for message, update in zip(sent, updates, strict=True):
        capture = captures[site_of[message.metadata.dst_node_id]]
        got = capture.load_update()
        local = {n: start[n] + update[n] for n in start}
        for name in start:  # received − sent, before the wrapper clipped anything (norms ≫ 0.01)
            assert torch.equal(got[name], local[name] - start[name])
        assert (
            capture.metadata["batches"] == [[0, 1]]
            and capture.metadata["global_file"] == "global.safetensors"
        )
    assert load_tensors(tmp_path / "captures" / "round-0001" / "global.safetensors").keys() == start.keys()
    assert arrays is not None
    moved = {n: t - start[n] for n, t in from_record(arrays).items()}
    norm = float(torch.sqrt(sum((t.double() ** 2).sum() for t in moved.values())))
    assert norm <= 0.01 + 1e-6  # the aggregate is the clipped one


def test_it_refuses_something_that_is_not_a_strategy(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="must be a flwr Strategy"):
        CapturingStrategy(object(), tmp_path)  # type: ignore[arg-type]
    assert repr(CapturingStrategy(FedAvg(), tmp_path)).startswith("CapturingStrategy(")
