"""Write tiles as a data folder (``images/`` + ``masks/``), as a user's would be laid out."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from feddp_eval.data.types import TileSet


def write_tile_folder(folder: Path, tiles: TileSet, *, first: int = 0) -> None:
    """``tiles`` as ``folder/images/tNNN.png`` + ``folder/masks/tNNN.png`` (8-bit), numbered from
    ``first``."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i, (image, mask) in enumerate(zip(tiles.images, tiles.masks, strict=True), start=first):
        pixels = (image.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / "images" / f"t{i:03d}.png")
        Image.fromarray((mask[0] * 255).to(torch.uint8).numpy()).save(folder / "masks" / f"t{i:03d}.png")
