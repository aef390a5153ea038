"""Local batch schedules: epoch coverage, fixed step counts, seeding, Poisson sampling rate."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from feddp_eval.config import TrainConfig
from feddp_eval.federated.client import local_schedule, steps_per_round


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    ("n", "train", "expected"),
    [
        (10, TrainConfig(batch_size=4, local_epochs=1), 3),
        (10, TrainConfig(batch_size=4, local_epochs=2), 6),
        (8, TrainConfig(batch_size=4, local_epochs=3), 6),
        (3, TrainConfig(batch_size=8, local_epochs=1), 1),
        (10, TrainConfig(batch_size=4, local_epochs=2, local_steps=5), 5),
        (1000, TrainConfig(batch_size=1, local_steps=1), 1),
    ],
)
def test_steps_per_round(n: int, train: TrainConfig, expected: int) -> None:
    assert steps_per_round(n, train) == expected


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 40),
    batch_size=st.integers(1, 12),
    epochs=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_epoch_mode_covers_each_sample_once_per_epoch(
    n: int, batch_size: int, epochs: int, seed: int
) -> None:
    train = TrainConfig(batch_size=batch_size, local_epochs=epochs)
    batches = local_schedule(n, train, generator=_gen(seed))
    assert len(batches) == steps_per_round(n, train)
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert Counter(i for b in batches for i in b) == dict.fromkeys(range(n), epochs)
    # Each pass is a permutation of the samples.
    per_pass = len(batches) // epochs
    for e in range(epochs):
        flat = [i for b in batches[e * per_pass : (e + 1) * per_pass] for i in b]
        assert sorted(flat) == list(range(n))


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 20),
    batch_size=st.integers(1, 8),
    steps=st.integers(1, 30),
    seed=st.integers(0, 2**31 - 1),
)
def test_local_steps_gives_exactly_k_batches(n: int, batch_size: int, steps: int, seed: int) -> None:
    train = TrainConfig(batch_size=batch_size, local_epochs=3, local_steps=steps)
    batches = local_schedule(n, train, generator=_gen(seed))
    assert len(batches) == steps
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert all(len(set(b)) == len(b) and all(0 <= i < n for i in b) for b in batches)
    # Coverage is balanced: every sample is used as often as any other, up to one pass.
    counts = Counter(i for b in batches for i in b)
    uses = [counts.get(i, 0) for i in range(n)]
    assert max(uses) - min(uses) <= 1


@pytest.mark.parametrize("poisson", [False, True])
def test_same_seed_same_schedule_different_seed_different(poisson: bool) -> None:
    train = TrainConfig(batch_size=4, local_epochs=2)
    a = local_schedule(20, train, generator=_gen(123), poisson=poisson)
    b = local_schedule(20, train, generator=_gen(123), poisson=poisson)
    c = local_schedule(20, train, generator=_gen(124), poisson=poisson)
    assert a == b
    assert a != c


def test_schedule_advances_the_generator() -> None:
    train = TrainConfig(batch_size=4)
    generator = _gen(0)
    first = local_schedule(20, train, generator=generator)
    second = local_schedule(20, train, generator=generator)
    assert first != second


def test_poisson_steps_are_unique_sorted_and_at_the_sampling_rate() -> None:
    n, batch_size, steps = 20, 5, 2000
    train = TrainConfig(batch_size=batch_size, local_steps=steps)
    batches = local_schedule(n, train, generator=_gen(7), poisson=True)
    assert len(batches) == steps
    for b in batches:
        assert b == sorted(set(b))
        assert all(0 <= i < n for i in b)

    rate = batch_size / n
    counts = Counter(i for b in batches for i in b)
    overall = sum(counts.values()) / (n * steps)
    # Standard error of the overall rate is sqrt(0.25 * 0.75 / 40000) ≈ 0.0022; per sample ≈ 0.0097.
    assert overall == pytest.approx(rate, abs=0.01)
    for i in range(n):
        assert counts[i] / steps == pytest.approx(rate, abs=0.05)
    # Batch sizes vary (Binomial(20, 0.25)), they are not fixed at batch_size.
    assert len({len(b) for b in batches}) > 3


def test_poisson_steps_may_be_empty() -> None:
    # P(empty) = (1 - 1/20)**20 ≈ 0.36 per step.
    train = TrainConfig(batch_size=1, local_steps=2000)
    batches = local_schedule(20, train, generator=_gen(1), poisson=True)
    empty = sum(1 for b in batches if not b)
    assert empty / len(batches) == pytest.approx(0.95**20, abs=0.05)


def test_poisson_step_count_follows_epochs() -> None:
    train = TrainConfig(batch_size=4, local_epochs=2)
    assert len(local_schedule(10, train, generator=_gen(0), poisson=True)) == 6


def test_poisson_rate_is_capped_at_one() -> None:
    train = TrainConfig(batch_size=16, local_steps=5)
    batches = local_schedule(6, train, generator=_gen(0), poisson=True)
    assert batches == [list(range(6))] * 5
