"""Multi-round honest-server inversion: several rounds' updates of the same tiles, inverted jointly.

Each observed round is simulated from its own global weights on one shared set of candidate tiles;
the objective is the mean of the per-round distances. More rounds are more equations on the same
unknowns, so the reconstruction must get better, and a one-round view must give exactly what the
single-round attack gives.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from attacks import ATTACKS, AttackerKnowledge, ServerView
from attacks.base import ObservedRound
from attacks.simulate import LocalRecipe, simulate_update
from attacks.view import sample_indices, server_view
from feddp_eval.config import ExperimentConfig, ModelConfig, with_overrides
from feddp_eval.data.synthetic import synthesize_tiles
from feddp_eval.data.types import TileSet
from feddp_eval.errors import ConfigError
from feddp_eval.federated.capture import list_captures
from feddp_eval.metrics.privacy import score_reconstruction
from feddp_eval.models.unet import UNet

MODEL = ModelConfig(depth=1, width=4, groups=2, activation="gelu")
STEP = LocalRecipe(batches=((0, 1),), lr=0.05)


def _round(tiles: TileSet, seed: int, index: int) -> ObservedRound:
    """One observed round: global weights drawn from ``seed``, the client's update on ``tiles``."""
    torch.manual_seed(seed)
    net = UNet(depth=MODEL.depth, width=MODEL.width, groups=MODEL.groups, activation=MODEL.activation)
    weights = {k: v.detach() for k, v in net.named_parameters()}
    update = simulate_update(net, weights, tiles.images, tiles.masks, STEP)
    return ObservedRound(index, {k: v.detach() for k, v in update.items()}, weights, STEP)


def _view(tiles: TileSet, rounds: tuple[ObservedRound, ...]) -> ServerView:
    first = rounds[0]
    return ServerView(
        update=first.update,
        global_weights=first.global_weights,
        model=MODEL,
        recipe=first.recipe,
        n_images=len(tiles),
        tile_size=tiles.tile_size,
        masks=tiles.masks,
        knowledge=AttackerKnowledge(),
        rounds=rounds,
    )


@pytest.fixture(scope="module")
def two_tiles() -> tuple[TileSet, tuple[ObservedRound, ...]]:
    """Two 16 px tiles and three rounds of their update from different global weights."""
    tiles = synthesize_tiles(2, tile_size=16, seed=5)
    return tiles, tuple(_round(tiles, seed, index) for index, seed in enumerate((11, 12, 13), start=1))


def _psnr(tiles: TileSet, rounds: tuple[ObservedRound, ...]) -> float:
    attack = ATTACKS.create(
        "inverting-gradients", iterations=300, image="pixels", init="uniform", lr=0.05, tv_weight=0.01
    )
    recon = attack.reconstruct(_view(tiles, rounds), seed=0)
    return score_reconstruction(recon.images, tiles.images).psnr


def test_three_rounds_recover_more_than_one(two_tiles) -> None:  # type: ignore[no-untyped-def]
    tiles, rounds = two_tiles
    one, three = _psnr(tiles, rounds[:1]), _psnr(tiles, rounds)
    assert three > one + 2.0, (one, three)


def test_one_round_view_is_the_single_round_attack(two_tiles) -> None:  # type: ignore[no-untyped-def]
    tiles, rounds = two_tiles
    single = _view(tiles, rounds[:1])
    plain = ServerView(
        update=single.update,
        global_weights=single.global_weights,
        model=MODEL,
        recipe=STEP,
        n_images=2,
        tile_size=16,
        masks=tiles.masks,
        knowledge=AttackerKnowledge(),
    )
    attack = ATTACKS.create("inverting-gradients", iterations=15, restarts=2)
    a, b = attack.reconstruct(single, seed=1), attack.reconstruct(plain, seed=1)
    torch.testing.assert_close(a.images, b.images, rtol=0, atol=0)
    assert a.restart_objectives == b.restart_objectives


def test_objective_is_the_mean_of_the_rounds(two_tiles) -> None:  # type: ignore[no-untyped-def]
    tiles, rounds = two_tiles
    attack = ATTACKS.create("inverting-gradients", iterations=1, tv_weight=0.0, colour_weight=0.0)
    each = [attack.reconstruct(_view(tiles, (r,)), seed=2).objective for r in rounds]
    joint = attack.reconstruct(_view(tiles, rounds), seed=2).objective
    assert joint == pytest.approx(sum(each) / 3, rel=1e-5)


def test_a_round_must_index_into_the_candidates(two_tiles) -> None:  # type: ignore[no-untyped-def]
    tiles, rounds = two_tiles
    wide = ObservedRound(9, rounds[0].update, rounds[0].global_weights, LocalRecipe(((0, 2),), lr=0.05))
    with pytest.raises(ValueError, match=r"round 9's recipe uses candidate slots \[0, 2\].*2 candidates"):
        _view(tiles, (rounds[0], wide))


def test_observer_sees_the_best_images_without_changing_them(two_tiles) -> None:  # type: ignore[no-untyped-def]
    tiles, rounds = two_tiles
    attack = ATTACKS.create("inverting-gradients", iterations=23)
    seen: list[tuple[int, float]] = []
    last: list[torch.Tensor] = []

    def observer(iteration: int, images: torch.Tensor, objective: float) -> None:
        assert images.shape == (2, 3, 16, 16) and 0 <= float(images.min()) <= float(images.max()) <= 1
        seen.append((iteration, objective))
        last[:] = [images]

    watched = attack.reconstruct(_view(tiles, rounds), seed=3, observer=observer, observe_every=10)
    plain = attack.reconstruct(_view(tiles, rounds), seed=3)
    assert [i for i, _ in seen] == [10, 20, 23]
    assert seen[-1][1] == watched.objective
    assert all(b <= a for (_, a), (_, b) in itertools.pairwise(seen))  # the best only improves
    torch.testing.assert_close(last[0], watched.images, rtol=0, atol=0)
    torch.testing.assert_close(watched.images, plain.images, rtol=0, atol=0)
    with pytest.raises(ValueError, match="observe_every"):
        attack.reconstruct(_view(tiles, rounds), observer=observer, observe_every=0)


# --------------------------------------------------------------------------- from a run's captures


@pytest.fixture(scope="module")
def sampled_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExperimentConfig, Path]:
    """Three rounds; site 0 (6 tiles) takes one step on 2 sampled tiles per round."""
    from feddp_eval.pipeline import run_train

    config = ExperimentConfig(device="cpu", seed=3)
    config = with_overrides(
        config,
        {
            "data.sites": 2,
            "data.train_tiles": [6, 3],
            "data.test_tiles": 2,
            "data.tile_size": 16,
            "model.depth": 1,
            "model.width": 4,
            "model.groups": 2,
            "train.rounds": 3,
            "train.batch_size": 2,
            "train.local_steps": 1,
            "train.lr": 0.01,
        },
    )
    run_dir = tmp_path_factory.mktemp("multiround") / "run"
    run_train(config, run_dir=run_dir)
    return config, run_dir


def test_multi_round_view_indexes_the_union_of_tiles(sampled_run) -> None:  # type: ignore[no-untyped-def]
    config, run_dir = sampled_run
    captures = [c for c in list_captures(run_dir) if c.site_index == 0]
    batches = [c.metadata["batches"][0] for c in captures]
    union = sorted({i for batch in batches for i in batch})
    assert sample_indices(captures) == union and len(union) > 2  # different tiles in different rounds
    masks = torch.zeros(len(union), 1, 16, 16)
    view = server_view(captures, config.model, AttackerKnowledge(), tile_size=16, masks=masks)
    assert view.n_images == len(union) and [r.round for r in view.observed] == [1, 2, 3]
    for observed, batch in zip(view.observed, batches, strict=True):
        assert observed.recipe.batches == (tuple(union.index(i) for i in batch),)
        torch.testing.assert_close(observed.update, captures[observed.round - 1].load_update())
    single = server_view(captures[1], config.model, AttackerKnowledge(), tile_size=16, masks=masks[:2])
    assert sorted(single.observed[0].recipe.batches[0]) == [0, 1] and single.rounds == ()
    # Withheld batch split: tiles cannot be told apart across rounds; every step uses every candidate.
    blind = server_view(
        captures, config.model, AttackerKnowledge(batch_split=False), tile_size=16, masks=masks
    )
    assert all(r.recipe.batches == (tuple(range(len(union))),) for r in blind.observed)
    with pytest.raises(ValueError, match="one client's rounds"):
        server_view(list_captures(run_dir), config.model, AttackerKnowledge(), tile_size=16, masks=masks)


def test_pipeline_attacks_every_round_and_records_convergence(sampled_run) -> None:  # type: ignore[no-untyped-def]
    from feddp_eval.io import read_csv
    from feddp_eval.metrics.perceptual import LPIPSMetric
    from feddp_eval.pipeline import TrainResult, attack_run
    from feddp_eval.rundir.prepare import finished_summary

    config, run_dir = sampled_run
    trained = TrainResult(run_dir, finished_summary(run_dir, config), reused=True)
    lpips = LPIPSMetric("alex")
    multi = with_overrides(
        config,
        {
            "attack.target_site": 0,
            "attack.target_round": "all",
            "attack.rounds_used": 2,
            "attack.iterations": 12,
            "attack.convergence_every": 5,
        },
    )
    outcome = attack_run(multi, trained, lpips)
    row, recon, truth, scenario = outcome.row, outcome.reconstruction, outcome.truth, outcome.scenario
    captures = [c for c in list_captures(run_dir) if c.site_index == 0][:2]
    assert row.rounds_used == 2 and scenario["rounds"] == [1, 2]
    assert len(truth) == len(sample_indices(captures)) == recon.images.shape[0]
    folder = run_dir / "attacks" / "inverting-gradients-site0-rounds1-2-mask-known"
    curve = read_csv(folder / "convergence.csv")
    assert [int(r["iteration"]) for r in curve] == [5, 10, 12]
    assert float(curve[-1]["objective"]) == pytest.approx(row.objective, rel=1e-6)
    assert float(curve[-1]["psnr"]) == pytest.approx(row.psnr, abs=1e-9)
    with pytest.raises(ConfigError, match=r"`attack.rounds_used` \(4\) is more than the run's 3 rounds"):
        with_overrides(multi, {"attack.rounds_used": 4})
