"""Tile grids as PNG, for a person to look at the generated data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from feddp_eval.data.checks import check_at_least
from feddp_eval.data.types import TileSet
from feddp_eval.errors import DataError

FloatArray = np.ndarray


def save_tile_grid(tiles: TileSet, path: str | Path, *, columns: int = 8, scale: int = 1) -> None:
    """Write a PNG where each tile stands beside its mask overlay, for a person to look at.

    The image is ``columns * (2 * S * scale + 2) + 2`` pixels wide and
    ``rows * (S * scale + 2) + 2`` high, with ``rows = ceil(len(tiles) / columns)``
    and a 2 px white gutter. Masked pixels are tinted green in the overlay.

    Args:
        tiles: the tiles to draw, at least one.
        path: where to write the PNG; parent folders must exist.
        columns: tile pairs per row, >= 1.
        scale: integer nearest-neighbour magnification, >= 1.
    """
    from PIL import Image  # torchvision's dependency; only needed here

    check_at_least("columns", columns, 1)
    check_at_least("scale", scale, 1)
    if len(tiles) == 0:
        raise DataError("`tiles` is empty; pass at least one tile to draw a grid")
    images = tiles.images.detach().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()
    masks = tiles.masks.detach().cpu()[:, 0].numpy() > 0.5
    overlay = images.copy()
    overlay[masks] = 0.45 * overlay[masks] + 0.55 * np.array([0.1, 0.9, 0.2])
    pairs = np.concatenate([images, overlay], axis=2)  # (N, S, 2S, 3)
    pairs = pairs.repeat(scale, axis=1).repeat(scale, axis=2)
    Image.fromarray(_grid(pairs, columns)).save(Path(path), format="PNG")


def _grid(cells: FloatArray, columns: int, gutter: int = 2) -> np.ndarray:
    count, height, width, _ = cells.shape
    rows = math.ceil(count / columns)
    canvas = np.ones((rows * (height + gutter) + gutter, columns * (width + gutter) + gutter, 3))
    for index in range(count):
        top = gutter + (index // columns) * (height + gutter)
        left = gutter + (index % columns) * (width + gutter)
        canvas[top : top + height, left : left + width] = cells[index]
    return (canvas * 255).round().astype(np.uint8)
