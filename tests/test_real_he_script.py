"""benchmarks/real_he.py without the package index: regions of tissue, pseudo-masks, the folder it
writes (read back by the folder loader), and the digest that pins the pixels."""

from __future__ import annotations

import zipfile
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scripts import load_benchmark

NUCLEUS = (90, 60, 140)  # hematoxylin purple
STROMA = (230, 160, 200)  # eosin pink
GLASS = (245, 245, 245)


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_benchmark("real_he.py")


def painted(size: int, discs: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """A pink tile with purple discs (row, column, radius), and the discs' mask."""
    rows, cols = np.mgrid[:size, :size]
    truth = np.zeros((size, size), dtype=bool)
    for r, c, radius in discs:
        truth |= (rows - r) ** 2 + (cols - c) ** 2 <= radius**2
    rgb = np.where(truth[..., None], NUCLEUS, STROMA).astype(np.uint8)
    noise = np.random.default_rng(0).integers(-6, 7, size=rgb.shape)
    return np.clip(rgb.astype(int) + noise, 0, 255).astype(np.uint8), truth


def test_pseudo_masks_find_the_nuclei(script: ModuleType) -> None:
    rgb, truth = painted(128, [(30, 30, 9), (80, 50, 12), (100, 100, 7), (40, 100, 10)])
    (mask,) = script.pseudo_masks([rgb])
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.97  # measured 0.996: only the discs' rims move with the σ = 1 px smoothing


def test_specks_and_holes_below_the_size_are_removed(script: ModuleType) -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:4, 2:4] = True  # 4 px: a speck
    mask[10:16, 10:16] = True  # 36 px: kept
    kept = script.drop_small(mask, 12)
    assert not kept[2:4, 2:4].any() and kept[10:16, 10:16].all() and kept.sum() == 36


def test_regions_keep_tissue_only_and_are_drawn_by_the_seed(script: ModuleType) -> None:
    size = script.REGION
    rgb = np.full((3 * size, 4 * size, 3), STROMA, dtype=np.uint8)
    rgb[:, 3 * size :] = GLASS  # the last column of regions is empty glass
    rgb[size : 2 * size, : size // 2] = GLASS  # region (1, 0) is half glass
    every = script.regions(rgb, keep=100, seed=0)
    assert (size, 0) not in every and all(x < 3 * size for _, x in every) and len(every) == 8
    drawn = script.regions(rgb, keep=3, seed=1)
    assert len(drawn) == 3 and set(drawn) <= set(every) and drawn == sorted(drawn)
    assert drawn == script.regions(rgb, keep=3, seed=1)


def test_the_folder_it_writes_is_a_site_the_loader_reads(script: ModuleType, tmp_path: Path) -> None:
    from feddp_eval.data.folder import find_pairs

    rgb, _ = painted(2 * script.REGION, [(40, 40, 10), (150, 90, 14), (200, 200, 9)])
    facts = script.write_site(tmp_path / "lab", "lab", rgb, keep=4, seed=0)
    pairs = find_pairs(tmp_path / "lab")
    assert facts["regions"] == len(pairs) == 4
    assert 0.0 < facts["foreground"] < 0.2


def test_a_changed_image_is_refused(script: ModuleType, tmp_path: Path) -> None:
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/data/tile.png", b"not the pixels the numbers were measured on")
    source = script.Source("lab", "pkg==1.0", "pkg/data/tile.png", "0" * 64, "a test")
    with pytest.raises(SystemExit, match="not the 0000"):
        script.read_member(source, wheel)


def test_the_figure_puts_each_attack_under_its_own_tile(script: ModuleType, tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    def tiles_file(name: str, level: float, truth: float) -> str:
        path = tmp_path / f"{name}.safetensors"
        true = np.full((1, 3, 8, 8), truth, dtype=np.float32)
        save_file({"true_images": true, "images": true * 0 + level, "prior_images": true * 0.5}, str(path))
        return str(path)

    def row(name: str, seed: int, truth: float) -> dict[str, object]:
        file = tiles_file(f"{name}-{seed}", 0.4, truth)
        return {"seed": seed, "defense": "none", "tiles_file": file, "psnr": 21.0, "mask_prior_psnr": 20.5}

    attacks = {"one-tile": [row("relu", 0, 0.3)], "one-tile-gelu": [row("gelu", 0, 0.3)]}
    path = script.figure(attacks, tmp_path / "grid.png")
    from PIL import Image

    with Image.open(path) as image:
        assert image.size[0] > image.size[1]  # one row (seed 0) of four panels
    attacks["one-tile-gelu"] = [row("gelu", 0, 0.9)]  # another tile: no common row to draw
    with pytest.raises(SystemExit, match="another tile"):
        script.figure(attacks, tmp_path / "grid.png")
