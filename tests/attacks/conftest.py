"""A single 16 px tile, its gradient step on a tiny smooth U-Net, and the server's view of it."""

from __future__ import annotations

import pytest
import torch

from attacks import AttackerKnowledge, ServerView
from attacks.simulate import LocalRecipe
from attacks.view import simulated_view
from feddp_eval.config import ModelConfig
from feddp_eval.data.synthetic import synthesize_tiles
from feddp_eval.data.types import TileSet

TINY_MODEL = ModelConfig(depth=1, width=8, groups=2, activation="gelu")


def _make_view(
    tiles: TileSet,
    recipe: LocalRecipe,
    *,
    model: ModelConfig = TINY_MODEL,
    mask: str = "known",
    prior: torch.Tensor | None = None,
    seed: int = 0,
) -> ServerView:
    return simulated_view(
        model,
        tiles.images,
        tiles.masks,
        recipe,
        prior=prior,
        knowledge=AttackerKnowledge(mask=mask),  # type: ignore[arg-type]
        foreground_prior=0.2,
        seed=seed,
    )


@pytest.fixture(scope="module")
def one_tile() -> tuple[TileSet, torch.Tensor]:
    """One 16 px tile and the public mean colour of seven other tiles of the same site."""
    tiles = synthesize_tiles(8, tile_size=16, seed=1)
    return tiles.subset([0]), tiles.images[1:].mean(dim=(0, 2, 3))


@pytest.fixture(scope="session")
def make_view():  # type: ignore[no-untyped-def]
    """``make_view(tiles, recipe, *, model, mask, prior, seed)``: the server's view of one local round."""
    return _make_view
