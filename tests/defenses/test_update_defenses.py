"""Update-level and server-side defenses: the noise is really there, clipping bounds the norm,
pruning keeps the largest coordinates, and central DP leaves what the server captures untouched."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from defenses.accounting import epsilon
from defenses.central_dp import CentralDP
from defenses.local_dp import LocalUpdateNoise
from defenses.prune import Prune
from defenses.update_ops import Update, clip_update, global_norm
from feddp_eval.config import DefenseConfig, ExperimentConfig, with_overrides
from feddp_eval.federated.aggregation import FedAvg, fedavg
from feddp_eval.federated.capture import list_captures
from feddp_eval.federated.hooks import ClientPlan
from feddp_eval.pipeline import run_train

# 200,000 coordinates in all
SHAPES = {"conv.weight": (64, 32, 3, 3), "conv.bias": (64,), "head.weight": (128, 1418)}


def _update(seed: int, scale: float = 1.0, shapes: dict[str, tuple[int, ...]] = SHAPES) -> Update:
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=generator) * scale for name, shape in shapes.items()}


def _flat(update: Update) -> torch.Tensor:
    return torch.cat([t.flatten() for t in update.values()])


def _plans(n: int, rounds: int = 3) -> list[ClientPlan]:
    return [ClientPlan(i, 10, 4, 3, rounds, 1.0) for i in range(n)]


def test_update_has_200k_coordinates() -> None:
    assert _flat(_update(0)).numel() == 200_000


# --------------------------------------------------------------------------- local-dp


@pytest.mark.parametrize(("sigma", "clip"), [(1.1, 1.0), (0.3, 0.05), (2.0, 10.0)])
def test_local_dp_noise_std_is_sigma_times_clip(sigma: float, clip: float) -> None:
    defense = LocalUpdateNoise(DefenseConfig(name="local-dp", noise=sigma, clip=clip))
    defense.setup(torch.nn.Linear(1, 1), _plans(2))
    update = _update(1, scale=0.1)  # norm ≈ 45, far above every clip used here
    released = defense.client(_plans(2)[0]).release(update, torch.Generator().manual_seed(2))
    assert released.keys() == update.keys()
    assert all(released[n].shape == update[n].shape for n in update)
    noise = _flat(released) - _flat(clip_update(update, clip))
    assert float(noise.std()) == pytest.approx(sigma * clip, rel=0.05)
    assert abs(float(noise.mean())) < 5 * sigma * clip / math.sqrt(noise.numel())


def test_local_dp_accounts_one_gaussian_mechanism_per_round_taken_part_in() -> None:
    defense = LocalUpdateNoise(DefenseConfig(name="local-dp", noise=1.1, clip=1.0))
    defense.setup(torch.nn.Linear(1, 1), _plans(2))
    clients = [defense.client(plan) for plan in _plans(2)]
    for _ in range(3):
        clients[0].release(_update(3, shapes={"w": (10,)}), torch.Generator().manual_seed(0))
    records = {r.client_id: r for c in clients if (r := c.privacy_record()) is not None}
    assert records[0].steps == 3 and records[1].steps == 0
    assert records[0].epsilon == pytest.approx(epsilon([(1.1, 1.0, 3)], delta=1e-5))
    assert records[1].epsilon == 0.0
    assert records[0].granularity == "client-level" and records[0].delta == 1e-5


@settings(max_examples=40, deadline=None)
@given(
    scale=st.floats(1e-4, 1e3),
    bound=st.floats(1e-3, 1e2),
    seed=st.integers(0, 2**31 - 1),
    sizes=st.lists(st.integers(1, 50), min_size=1, max_size=4),
)
def test_clipped_norm_never_exceeds_the_bound(
    scale: float, bound: float, seed: int, sizes: list[int]
) -> None:
    update = _update(seed, scale=scale, shapes={f"p{i}": (n,) for i, n in enumerate(sizes)})
    clipped = clip_update(update, bound)
    norm, clipped_norm = global_norm(update), global_norm(clipped)
    # float32 storage of the scaled tensors: allow one part in 10^6 of rounding, nothing more.
    assert clipped_norm <= bound * (1 + 1e-6)
    if norm <= bound:
        assert all(torch.equal(clipped[n], update[n]) for n in update)
    else:
        assert clipped_norm == pytest.approx(bound, rel=1e-5)
        # Clipping scales; it does not change the direction.
        cosine = torch.nn.functional.cosine_similarity(_flat(clipped).double(), _flat(update).double(), dim=0)
        assert float(cosine) == pytest.approx(1.0, abs=1e-6)


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(1e-3, 1e2), bound=st.floats(1e-2, 10.0), seed=st.integers(0, 2**31 - 1))
def test_local_dp_without_noise_releases_the_clipped_update(scale: float, bound: float, seed: int) -> None:
    defense = LocalUpdateNoise(DefenseConfig(name="local-dp", noise=0.0, clip=bound))
    defense.setup(torch.nn.Linear(1, 1), _plans(1))
    update = _update(seed, scale=scale, shapes={"a": (7, 3), "b": (5,)})
    released = defense.client(_plans(1)[0]).release(update, torch.Generator().manual_seed(0))
    assert global_norm(released) <= bound * (1 + 1e-6)
    assert all(torch.equal(released[n], clip_update(update, bound)[n]) for n in update)


# --------------------------------------------------------------------------- central-dp


@pytest.mark.parametrize(("sigma", "clip", "m"), [(1.0, 1.0, 4), (0.5, 2.0, 3)])
def test_central_dp_noise_on_the_aggregate_is_sigma_clip_over_m(sigma: float, clip: float, m: int) -> None:
    defense = CentralDP(DefenseConfig(name="central-dp", noise=sigma, clip=clip))
    defense.setup(torch.nn.Linear(1, 1), _plans(m))
    aggregator = defense.wrap(FedAvg())
    updates = [_update(10 + i, scale=0.05 * (i + 1)) for i in range(m)]  # norms ≈ 22·(i+1) > clip
    weights = [float(10 * (i + 1)) for i in range(m)]  # ignored: uniform weights bound the sensitivity
    aggregate = aggregator.aggregate(updates, weights, torch.Generator().manual_seed(3))
    clipped_mean = fedavg([clip_update(u, clip) for u in updates], [1.0] * m)
    noise = _flat(aggregate) - _flat(clipped_mean)
    assert float(noise.std()) == pytest.approx(sigma * clip / m, rel=0.05)
    record = aggregator.privacy_records()[0]
    assert record.steps == 1 and record.sample_rate == 1.0 and record.granularity == "client-level"
    assert record.epsilon == pytest.approx(epsilon([(sigma, 1.0, 1)], delta=1e-5))


def test_central_dp_captures_the_raw_updates_the_server_receives(
    tmp_path: Path, tiny_config: ExperimentConfig
) -> None:
    # It protects the aggregate, not against the server: round 1's captures equal the undefended run's.
    one_round = with_overrides(tiny_config, {"train.rounds": 1})
    plain = run_train(one_round, run_dir=tmp_path / "none").run_dir
    central_config = with_overrides(
        one_round, {"defense.name": "central-dp", "defense.noise": 1.0, "defense.clip": 0.01}
    )
    central = run_train(central_config, run_dir=tmp_path / "central").run_dir
    for a, b in zip(list_captures(plain), list_captures(central), strict=True):
        raw, captured = a.load_update(), b.load_update()
        assert all(torch.equal(raw[n], captured[n]) for n in raw)
        assert global_norm(captured) > 0.01  # not clipped, not noised
    # ...while the global model did get the noised, clipped aggregate.
    plain_model = load_file(str(plain / "model.safetensors"))
    central_model = load_file(str(central / "model.safetensors"))
    assert max(float((plain_model[k] - central_model[k]).abs().max()) for k in plain_model) > 1e-4
    assert CentralDP.protects_against_server is False


# --------------------------------------------------------------------------- prune


@settings(max_examples=40, deadline=None)
@given(
    ratio=st.floats(0.0, 0.999),
    seed=st.integers(0, 2**31 - 1),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=4),
)
def test_prune_zeroes_the_requested_fraction_and_keeps_the_largest(
    ratio: float, seed: int, sizes: list[int]
) -> None:
    defense = Prune(DefenseConfig(name="prune", prune_ratio=ratio))
    update = _update(seed, shapes={f"p{i}": (n, 2) for i, n in enumerate(sizes)})
    released = defense.client(_plans(1)[0]).release(update, torch.Generator())
    assert released.keys() == update.keys()
    assert all(released[n].shape == update[n].shape for n in update)
    before, after = _flat(update), _flat(released)
    assert bool((before != 0).all())  # continuous draws: every zero below comes from pruning
    zeroed = after == 0
    assert int(zeroed.sum()) == round(ratio * before.numel())
    kept = ~zeroed
    assert torch.equal(after[kept], before[kept])  # survivors are released unchanged
    if zeroed.any() and kept.any():
        assert float(before[kept].abs().min()) >= float(before[zeroed].abs().max())


def test_prune_with_ratio_zero_releases_everything() -> None:
    update = _update(5, shapes={"w": (30,)})
    released = (
        Prune(DefenseConfig(name="prune", prune_ratio=0.0))
        .client(_plans(1)[0])
        .release(update, torch.Generator())
    )
    assert torch.equal(released["w"], update["w"])


def test_prune_says_it_has_no_guarantee() -> None:
    defense = Prune(DefenseConfig(name="prune", prune_ratio=0.5))
    defense.setup(torch.nn.Linear(1, 1), _plans(2))
    records = [defense.client(plan).privacy_record() for plan in _plans(2)]
    assert [r.granularity for r in records] == ["none", "none"]
    assert all(r.epsilon is None and r.delta is None for r in records)


def test_each_defense_releases_a_simulated_round_as_its_clients_do() -> None:
    """For an attacker that learns from rounds it simulates (learned-inversion): local-dp clips the
    update to C and adds σC noise; one-step dp-sgd clips the tile's gradient (``update / −lr``) to C,
    adds σC noise and divides by the expected batch min(B, n), as Opacus; none and the server-side
    central-dp pass it as trained; a defense that does not say (prune), or dp-sgd over several steps,
    is refused."""
    import pytest
    import torch

    from attacks.simulate import LocalRecipe
    from defenses import DEFENSES
    from defenses.base import SimulatedRelease
    from feddp_eval.errors import ConfigError

    lr, one_step = 0.05, LocalRecipe(batches=((0,),), lr=0.05)
    updates = torch.cat([torch.full((1, 4000), 0.01), torch.full((1, 4000), 1e-5)])  # norms 0.63, 6e-4

    def release(
        name: str, rows: torch.Tensor, recipe: LocalRecipe = one_step, **published: float
    ) -> torch.Tensor:
        noise = torch.Generator().manual_seed(0)
        return DEFENSES.get(name).release_simulated(rows.clone(), SimulatedRelease(published, recipe, noise))

    for clean in ("none", "central-dp"):
        assert release(clean, updates, clip=1.0, noise_multiplier=1.0).equal(updates)
    clipped = release("local-dp", updates, clip=0.1, noise_multiplier=0.0)
    assert float(clipped[0].norm()) == pytest.approx(0.1, rel=1e-5)
    torch.testing.assert_close(clipped[1], updates[1])  # under the clip: unchanged
    noisy = release("local-dp", torch.zeros(3, 4000), clip=0.1, noise_multiplier=1.5)
    assert float(noisy.std()) == pytest.approx(0.15, rel=0.03)  # σ·C per coordinate (12,000 draws)
    sgd = {"clip": 1.0, "batch_size": 8, "n_samples": 2}
    gradient = release("dp-sgd", updates, noise_multiplier=0.0, **sgd) / -lr * 2  # expected batch min(8, 2)
    assert float(gradient[0].norm()) == pytest.approx(1.0, rel=1e-5)  # 12.6 clipped to C = 1
    torch.testing.assert_close(gradient[1], updates[1] / -lr)
    noisy = release("dp-sgd", torch.zeros(3, 4000), noise_multiplier=1.1, **sgd)
    assert float(noisy.std()) == pytest.approx(lr * 1.1 / 2, rel=0.03)
    with pytest.raises(ConfigError, match="one local SGD step only"):
        release("dp-sgd", updates, LocalRecipe(batches=((0,), (0,)), lr=lr), noise_multiplier=1.0, **sgd)
    with pytest.raises(ConfigError, match="defense 'prune' does not say how it releases"):
        release("prune", updates)
