"""benchmarks/learned_inversion.py's own piece: the scenario's one-tile updates (the attack's pieces it
imports, the DP release among them, are tested in tests/attacks/test_learned.py)."""

from __future__ import annotations

import sys
from types import ModuleType

import pytest
import torch
from scripts import BENCHMARKS, load_benchmark

from attacks.simulate import LocalRecipe, flatten
from attacks.view import simulated_view
from feddp_eval.config import ModelConfig
from feddp_eval.data.synthetic import synthesize_tiles

TINY = ModelConfig(depth=1, width=4, groups=2)


@pytest.fixture(scope="module")
def script() -> ModuleType:
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # it imports inversion_basin as the scripts do when run
    return load_benchmark("learned_inversion.py")


def test_the_scenarios_one_tile_updates_hold_its_captured_update(script: ModuleType) -> None:
    """The script's wrapper of attacks.learned.one_tile_updates (tested in tests/attacks/test_learned.py)
    simulates the scenario's own round: its first tile's update is the view's (vmap against one call:
    float order only, at most 9.7e-7 of the largest entry at 1, 2 and 4 threads)."""
    tiles = synthesize_tiles(3, tile_size=16, seed=3)
    recipe = LocalRecipe(batches=((0,),), lr=0.05, momentum=0.9)
    view = simulated_view(TINY, tiles.images[:1], tiles.masks[:1], recipe, seed=1)
    scenario = script.Scenario(tiles.images[:1], tiles.masks[:1], view, tiles.images[:1])
    updates = script.one_tile_updates(scenario, tiles.images, tiles.masks)
    assert updates.shape == (3, sum(v.numel() for v in view.global_weights.values()))
    torch.testing.assert_close(
        updates[0], flatten(view.update, list(view.global_weights)), rtol=1e-4, atol=1e-7
    )
    two = simulated_view(TINY, tiles.images[:2], tiles.masks[:2], LocalRecipe(((0, 1),), lr=0.05), seed=1)
    with pytest.raises(ValueError, match="one tile"):
        script.one_tile_updates(
            script.Scenario(tiles.images[:2], tiles.masks[:2], two, tiles.images[:2]),
            tiles.images,
            tiles.masks,
        )


def test_masks_unknown_rows_score_what_the_attack_rebuilds(
    script: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--masks-unknown`` at its largest size fits and picks on the same public tiles as the attack with
    ``public_tiles = n`` and ``validation``: the attacked tile's mask Dice and PSNR are the attack's."""
    from attacks import ATTACKS, AttackerKnowledge
    from attacks.threat_model import ServerView
    from feddp_eval.metrics.privacy import mask_dice

    public = synthesize_tiles(70, tile_size=16, seed=12)
    monkeypatch.setattr(script, "public_tiles", lambda seed, n: public.subset(list(range(n))))
    monkeypatch.setattr(script, "attacked_site", lambda *args: None)
    monkeypatch.setattr(script, "public_statistics", lambda site: {"mean_rgb": [0.7, 0.5, 0.7]})
    tile = synthesize_tiles(1, tile_size=16, seed=13)
    recipe = LocalRecipe(batches=((0,),), lr=0.05, momentum=0.9)
    view = simulated_view(
        TINY, tile.images, tile.masks, recipe, seed=1, knowledge=AttackerKnowledge(mask="unknown")
    )
    scenario = script.Scenario(tile.images, tile.masks, view, tile.images)
    (row,) = script.measure_unknown(scenario, [40], validation=20, test=10)
    attack = ATTACKS.create("learned-inversion", public_tiles=40, validation=20)
    recon = attack.reconstruct(
        ServerView(**{**view.__dict__, "public_tiles": public.subset(list(range(60)))})
    )
    assert row.train == 40
    assert row.dice[3] == pytest.approx(mask_dice(recon.masks, tile.masks), abs=1e-9)
    assert row.psnr[5] == pytest.approx(script.psnr(recon.images, tile.images), abs=1e-6)
