"""The gallery puts each reconstruction under the tile it is of, also where settings attacked other tiles."""

from __future__ import annotations

import numpy as np

from reports.gallery import gallery_rows
from reports.summary import SettingSummary


def setting(defense: str, noise: float) -> SettingSummary:
    return SettingSummary("inverting-gradients", defense, noise, 1, None, None, None, None, {}, None)


def tiles_file(*levels: float) -> dict[str, np.ndarray]:
    images = np.stack([np.full((3, 4, 4), level, dtype=np.float32) for level in levels])
    masks = (images[:, :1] > 0.5).astype(np.float32)
    return {"true_images": images, "true_masks": masks, "images": images + 0.01, "prior_images": images * 0}


def test_a_setting_that_attacked_other_tiles_shows_its_own_truth() -> None:
    none, dp, central = setting("none", 0.0), setting("dp-sgd", 1.1), setting("dp-sgd", 2.0)
    shown = [none, dp, central]
    picked = {s.label: {"psnr": 20.0, "seed": 0, "target_site": 0, "mask": "known"} for s in shown}
    # The reference trained on tiles 0.2 and 0.7; σ=1.1 drew 0.9 (Poisson); σ=2 the reference's tiles.
    tiles = {none.label: tiles_file(0.2, 0.7), dp.label: tiles_file(0.9), central.label: tiles_file(0.2, 0.7)}
    header, body = gallery_rows(shown, picked, tiles, (0, 0), mask_known=True)
    assert [r.label for r in header] == ["true tiles", "true masks"]
    labels = [r.label for r in body]
    assert labels[0].startswith("prior")
    assert labels[1].startswith("no defense")
    assert labels[2] == "σ=1.1: its own true tiles (another batch)"
    assert body[2].images is not None and np.array_equal(body[2].images, tiles[dp.label]["true_images"])
    assert labels[3].startswith("σ=1.1 · PSNR") and labels[4].startswith("σ=2 · PSNR")
    assert len(body) == 5  # σ=2 attacked the header's tiles: no extra row
