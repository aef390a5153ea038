"""The reconstruction grid: each arm's reconstructions sit beside its own true tiles."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from feddp_eval.data.types import TileSet
from feddp_eval.viz import grid_rows, save_comparison_grid


def tiles(*levels: float) -> TileSet:
    images = torch.stack([torch.full((3, 8, 8), level) for level in levels])
    return TileSet(images, (images[:, :1] > 0.5).float())


def rebuilt(tile_set: TileSet, order: list[int], shift: float = 0.01) -> SimpleNamespace:
    return SimpleNamespace(images=tile_set.images[order] + shift, masks=tile_set.masks[order])


def test_arms_with_different_tiles_get_a_row_per_distinct_tile() -> None:
    # The reference trained on tile 0.2; the DP arm drew 0.7 and 0.2 (Poisson sampling).
    reference, defended = tiles(0.2), tiles(0.7, 0.2)
    arms = [
        ("prior", reference, rebuilt(reference, [0], 0.1)),
        ("prior", defended, rebuilt(defended, [0, 1], 0.1)),
        ("none", reference, rebuilt(reference, [0])),
        ("dp", defended, rebuilt(defended, [1, 0])),  # reconstructions in another order
    ]
    rows, cells = grid_rows(arms)
    assert rows == [(0, 0), (1, 0)]  # tile 0.2 (first seen in arm 0), then 0.7 (arm 1's tile 0)
    prior, none, dp = cells
    assert prior == [(0, 0), (1, 0)]
    assert none == [(2, 0), None]  # the reference never saw tile 0.7
    assert dp == [(3, 0), (3, 1)]  # its reconstruction 0 is of 0.2, 1 of 0.7: matched, not in order


def test_the_grid_renders_the_union(tmp_path: Path) -> None:
    reference, defended = tiles(0.2), tiles(0.7, 0.2)
    arms = [("none", reference, rebuilt(reference, [0])), ("dp", defended, rebuilt(defended, [0, 1]))]
    path = save_comparison_grid(tmp_path / "grid.png", arms)
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
    assert height < width  # two rows of six panels, not three rows
