"""Flower's DP blocks, set by ``feddp_eval.flower.dp``, apply our clipping and our noise level.

Compared on fixed updates: with σ = 0 the clipped average is ours to float precision; with σ > 0
the noise's standard deviation over 2·10⁵ coordinates is ours within 1 %. Where the mechanisms
differ (Flower's default sample-count weighting) the test shows the difference.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from flwr.app import Context, Message, MessageType, RecordDict

from defenses.central_dp import CentralDPAggregator
from defenses.update_ops import add_gaussian, clip_update
from feddp_eval.config import DefenseConfig
from feddp_eval.federated.aggregation import FedAvg
from feddp_eval.flower.dp import EQUAL_WEIGHT, central_dp_strategy, equal_weight_fedavg, local_dp_mod
from feddp_eval.flower.protocol import ARRAYS, METRICS, NUM_EXAMPLES
from feddp_eval.flower.records import from_record, metric_record, to_record

SIZE = 200_000


@pytest.fixture(autouse=True)
def _task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages outside a running app need a task identity (a run, a task, a node)."""
    from flwr.supercore.task_identity import TaskIdentity

    for attribute in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attribute, 1)


def _setting(name: str, noise: float, clip: float) -> DefenseConfig:
    return DefenseConfig(name=name, noise=noise, clip=clip, delta=1e-5)


def _updates(m: int) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [
        {"a": torch.randn(SIZE - 10, generator=gen) * (i + 1) * 1e-3, "b": torch.randn(10, generator=gen)}
        for i in range(m)
    ]


def _replies(start: dict[str, torch.Tensor], updates: list[dict[str, torch.Tensor]]) -> list[Message]:
    """Replies of m clients holding ``start + update`` (float64 on the wire), 1 and 3 tiles each..."""
    replies = []
    for i, update in enumerate(updates):
        sent = Message(RecordDict(), dst_node_id=i + 1, message_type=MessageType.TRAIN)
        weights = {n: start[n].double() + update[n].double() for n in start}
        metrics = metric_record({NUM_EXAMPLES: 1 + 2 * i, EQUAL_WEIGHT: 1})
        replies.append(Message(RecordDict({ARRAYS: to_record(weights), METRICS: metrics}), reply_to=sent))
    return replies


def _flower_central(noise: float, clip: float, updates: list, *, inner: object = None) -> dict:
    start = {"a": torch.full((SIZE - 10,), 0.5), "b": torch.zeros(10)}
    strategy = central_dp_strategy(
        _setting("central-dp", noise, clip), num_sampled_clients=len(updates), inner=inner
    )  # type: ignore[arg-type]
    strategy.current_arrays = to_record({n: t.double() for n, t in start.items()})
    arrays, _ = strategy.aggregate_train(1, _replies(start, updates))
    assert arrays is not None
    return {n: t - start[n].double() for n, t in from_record(arrays).items()}


def test_central_dp_clips_and_averages_as_ours_without_noise() -> None:
    updates = _updates(3)
    ours = CentralDPAggregator(FedAvg(), _setting("central-dp", 0.0, 0.5), noise_multiplier=0.0, rate=1.0)
    expected = ours.aggregate(updates, [1.0, 3.0, 5.0], torch.Generator())
    got = _flower_central(0.0, 0.5, updates)
    for name in expected:
        torch.testing.assert_close(got[name].float(), expected[name], rtol=0, atol=1e-7)


def test_flower_default_fedavg_weighting_is_not_ours() -> None:
    """Flower's plain FedAvg weights by num-examples (1, 3, 5 here): a weighted mean, not ours."""
    from flwr.serverapp.strategy import FedAvg as FlowerFedAvg

    updates = _updates(3)
    clipped = [clip_update(u, 0.5) for u in updates]
    weighted = {n: sum(c[n] * w for c, w in zip(clipped, (1, 3, 5), strict=True)) / 9 for n in clipped[0]}
    got = _flower_central(0.0, 0.5, updates, inner=FlowerFedAvg())
    torch.testing.assert_close(got["a"].float(), weighted["a"], rtol=0, atol=1e-7)
    uniform = sum(c["a"] for c in clipped) / 3
    assert (got["a"].float() - uniform).abs().max() > 1e-4


@pytest.mark.parametrize(("noise", "clip", "m"), [(1.1, 0.5, 4), (0.3, 2.0, 2)])
def test_central_dp_noise_std_is_sigma_c_over_m(noise: float, clip: float, m: int) -> None:
    updates = _updates(m)
    exact = CentralDPAggregator(FedAvg(), _setting("central-dp", 0, clip), noise_multiplier=0.0, rate=1.0)
    mean = exact.aggregate(updates, [1.0] * m, torch.Generator())
    np.random.seed(0)
    got = _flower_central(noise, clip, updates)
    ours = add_gaussian({"a": torch.zeros(SIZE)}, noise * clip / m, torch.Generator().manual_seed(0))
    assert float((got["a"] - mean["a"].double()).std()) == pytest.approx(noise * clip / m, rel=0.01)
    assert float(ours["a"].std()) == pytest.approx(noise * clip / m, rel=0.01)


def test_flower_fails_on_an_all_zero_update_where_ours_keeps_it() -> None:
    """A difference outside the mechanism: Flower divides by the update's norm; ours scales by 1."""
    zero = {"a": torch.zeros(SIZE - 10), "b": torch.zeros(10)}
    assert clip_update(zero, 0.5)["a"].abs().sum() == 0
    with pytest.raises(ZeroDivisionError):
        _flower_central(1.0, 0.5, [zero, *_updates(1)])


def _local_dp(noise: float, clip: float, update: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = {n: torch.full_like(t, 0.25) for n, t in update.items()}
    received = Message(RecordDict({ARRAYS: to_record(start)}), dst_node_id=1, message_type=MessageType.TRAIN)
    local = {n: start[n].double() + update[n].double() for n in start}

    def client(msg: Message, context: Context) -> Message:
        return Message(RecordDict({ARRAYS: to_record(local)}), reply_to=msg)

    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    out = local_dp_mod(_setting("local-dp", noise, clip))(received, context, client)
    return {n: t - start[n].double() for n, t in from_record(out.content.array_records[ARRAYS]).items()}


def test_local_dp_mod_clips_as_ours_and_its_noise_std_is_sigma_c() -> None:
    update = _updates(1)[0]
    clipped = _local_dp(0.0, 0.05, update)
    for name, expected in clip_update(update, 0.05).items():
        torch.testing.assert_close(clipped[name].float(), expected, rtol=0, atol=1e-8)
    np.random.seed(0)
    noised = _local_dp(1.1, 0.05, update)
    noise = torch.cat([(noised[n] - clipped[n]).flatten() for n in update])
    assert float(noise.std()) == pytest.approx(1.1 * 0.05, rel=0.01)
    mod = local_dp_mod(_setting("local-dp", 1.1, 0.05))
    assert mod.sensitivity * math.sqrt(2 * math.log(1.25 / mod.delta)) / mod.epsilon == pytest.approx(
        1.1 * 0.05
    )


def test_the_mapping_refuses_another_defense_or_a_target_epsilon() -> None:
    with pytest.raises(ValueError, match="maps the local-dp defense"):
        local_dp_mod(_setting("central-dp", 1.0, 1.0))
    with pytest.raises(ValueError, match="not `target_epsilon`"):
        central_dp_strategy(DefenseConfig(name="central-dp", target_epsilon=3.0), num_sampled_clients=2)
    assert equal_weight_fedavg().weighted_by_key == EQUAL_WEIGHT
