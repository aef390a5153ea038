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
