"""FedAvg against numpy's weighted average, plus its degenerate cases and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from feddp_eval.federated.aggregation import fedavg

SHAPES = {"conv.weight": (2, 3, 3, 3), "conv.bias": (2,), "head.scale": ()}


def _updates(n_clients: int, seed: int, dtype: torch.dtype = torch.float64) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {name: torch.randn(shape, generator=generator, dtype=dtype) for name, shape in SHAPES.items()}
        for _ in range(n_clients)
    ]


@settings(max_examples=100, deadline=None)
@given(
    weights=st.lists(st.floats(min_value=0.0, max_value=1000.0), min_size=1, max_size=6).filter(
        lambda w: sum(w) > 1e-3
    ),
    seed=st.integers(0, 2**31 - 1),
)
def test_fedavg_equals_numpy_weighted_average(weights: list[float], seed: int) -> None:
    updates = _updates(len(weights), seed)
    result = fedavg(updates, weights)
    assert list(result) == list(SHAPES)
    for name, shape in SHAPES.items():
        stacked = np.stack([u[name].numpy() for u in updates])
        expected = np.average(stacked, axis=0, weights=weights)
        assert result[name].shape == shape
        assert result[name].dtype == torch.float64
        np.testing.assert_allclose(result[name].numpy(), expected, rtol=1e-10, atol=1e-12)


def test_float32_in_float32_out() -> None:
    updates = _updates(3, seed=1, dtype=torch.float32)
    result = fedavg(updates, [48, 32, 4])
    for name in SHAPES:
        assert result[name].dtype == torch.float32
        expected = np.average(np.stack([u[name].numpy() for u in updates]), axis=0, weights=[48, 32, 4])
        np.testing.assert_allclose(result[name].numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_clients", [2, 3, 5])
def test_equal_weights_give_the_plain_mean(n_clients: int) -> None:
    updates = _updates(n_clients, seed=n_clients)
    result = fedavg(updates, [7] * n_clients)
    for name in SHAPES:
        expected = torch.stack([u[name] for u in updates]).mean(0)
        torch.testing.assert_close(result[name], expected, rtol=1e-12, atol=1e-12)


def test_weights_are_scale_invariant_and_zero_weight_drops_a_client() -> None:
    updates = _updates(3, seed=4)
    a = fedavg(updates, [1.0, 2.0, 3.0])
    b = fedavg(updates, [10, 20, 30])
    dropped = fedavg([*updates, _updates(1, seed=99)[0]], [1.0, 2.0, 3.0, 0.0])
    for name in SHAPES:
        torch.testing.assert_close(a[name], b[name], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a[name], dropped[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weight", [1.0, 0.5, 64])
def test_one_client_is_identity(weight: float) -> None:
    [update] = _updates(1, seed=2, dtype=torch.float32)
    result = fedavg([update], [weight])
    for name in SHAPES:
        assert torch.equal(result[name], update[name])


def test_inputs_are_not_modified() -> None:
    updates = _updates(2, seed=5)
    copies = [{k: v.clone() for k, v in u.items()} for u in updates]
    fedavg(updates, [1, 3])
    for u, c in zip(updates, copies, strict=True):
        for name in SHAPES:
            assert torch.equal(u[name], c[name])


def test_mismatched_keys_raise() -> None:
    a, b = _updates(2, seed=6)
    b["extra"] = torch.zeros(1, dtype=torch.float64)
    with pytest.raises(ValueError, match="different parameter names"):
        fedavg([a, b], [1, 1])
    del b["extra"], b["conv.bias"]
    with pytest.raises(ValueError, match="different parameter names"):
        fedavg([a, b], [1, 1])


@pytest.mark.parametrize("weights", [[0, 0], [0.0, 0.0], [-1, 2], [3, -0.5]])
def test_zero_or_negative_weights_raise(weights: list[float]) -> None:
    with pytest.raises(ValueError, match="non-negative and not all zero"):
        fedavg(_updates(2, seed=7), weights)


@pytest.mark.parametrize(("n_updates", "weights"), [(2, [1]), (1, [1, 1]), (0, []), (0, [1])])
def test_length_mismatch_raises(n_updates: int, weights: list[float]) -> None:
    with pytest.raises(ValueError, match="one weight per update"):
        fedavg(_updates(n_updates, seed=8), weights)
