"""A single 16 px tile, its gradient step on a tiny smooth U-Net, and the server's view of it."""

from __future__ import annotations

import pytest
import torch

from attacks import AttackerKnowledge, ServerView
from attacks.simulate import LocalRecipe, simulate_update
from feddp_eval.config import ModelConfig
from feddp_eval.data.synthetic import synthesize_tiles
from feddp_eval.data.types import TileSet
from feddp_eval.models.unet import UNet

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
    torch.manual_seed(seed)
    net = UNet(depth=model.depth, width=model.width, groups=model.groups, activation=model.activation)
    weights = {k: v.detach() for k, v in net.named_parameters()}
    update = {
        k: v.detach() for k, v in simulate_update(net, weights, tiles.images, tiles.masks, recipe).items()
    }
    knowledge = AttackerKnowledge(mask=mask)  # type: ignore[arg-type]
    return ServerView(
        update=update,
        global_weights=weights,
        model=model,
        recipe=recipe,
        n_images=len(tiles),
        tile_size=tiles.tile_size,
        masks=tiles.masks if mask == "known" else None,
        knowledge=knowledge,
        prior=prior,
        foreground_prior=0.2,
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
