"""Tests of the synthetic H&E generator: determinism, ranges, stains, deconvolution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from feddp_eval.data.synthetic import (
    REFERENCE_STAIN,
    StainProfile,
    hematoxylin_channel,
    save_tile_grid,
    site_stain,
    synthesize_tiles,
    synthetic_sites,
)
from feddp_eval.data.types import TileSet
from feddp_eval.errors import ConfigError, DataError


def test_same_seed_gives_identical_tiles() -> None:
    first = synthesize_tiles(6, tile_size=32, seed=3)
    second = synthesize_tiles(6, tile_size=32, seed=3)
    assert torch.equal(first.images, second.images)
    assert torch.equal(first.masks, second.masks)


def test_different_seeds_give_different_tiles() -> None:
    first = synthesize_tiles(6, tile_size=32, seed=3)
    second = synthesize_tiles(6, tile_size=32, seed=4)
    assert not torch.equal(first.images, second.images)
    assert not torch.equal(first.masks, second.masks)


@pytest.mark.parametrize("tile_size", [8, 16, 33, 64])
def test_shapes_dtypes_and_ranges(tile_size: int) -> None:
    tiles = synthesize_tiles(5, tile_size=tile_size, seed=1)
    assert tiles.images.shape == (5, 3, tile_size, tile_size)
    assert tiles.masks.shape == (5, 1, tile_size, tile_size)
    assert tiles.images.dtype == torch.float32
    assert tiles.masks.dtype == torch.float32
    assert tiles.images.min() >= 0.0
    assert tiles.images.max() <= 1.0
    assert set(tiles.masks.unique().tolist()) <= {0.0, 1.0}


def test_zero_tiles_is_an_empty_tile_set() -> None:
    tiles = synthesize_tiles(0, tile_size=16)
    assert len(tiles) == 0
    assert tiles.images.shape == (0, 3, 16, 16)
    assert tiles.masks.shape == (0, 1, 16, 16)


def test_foreground_fraction_is_plausible() -> None:
    fractions = synthesize_tiles(96, seed=7).masks.mean(dim=(1, 2, 3))
    assert 0.10 <= fractions.mean().item() <= 0.25
    assert fractions.max().item() <= 0.6
    # Tiles differ: some sparse, some crowded.
    assert fractions.min().item() < 0.08
    assert fractions.max().item() > 0.25


def test_reference_stain_is_ruifrok_johnston_normalised() -> None:
    expected_h = np.array([0.650, 0.704, 0.286])
    expected_e = np.array([0.072, 0.990, 0.105])
    np.testing.assert_allclose(REFERENCE_STAIN.hematoxylin, expected_h / np.linalg.norm(expected_h))
    np.testing.assert_allclose(REFERENCE_STAIN.eosin, expected_e / np.linalg.norm(expected_e))
    assert REFERENCE_STAIN.h_scale == 1.0
    assert REFERENCE_STAIN.e_scale == 1.0


def test_site_stain_is_deterministic_unit_and_differs_between_sites() -> None:
    assert site_stain(2, seed=5) == site_stain(2, seed=5)
    assert site_stain(2, seed=5) != site_stain(3, seed=5)
    assert site_stain(2, seed=5) != site_stain(2, seed=6)
    for index in range(4):
        stain = site_stain(index, seed=0)
        assert np.linalg.norm(stain.hematoxylin) == pytest.approx(1.0)
        assert np.linalg.norm(stain.eosin) == pytest.approx(1.0)
        # Still hematoxylin-like and eosin-like: close to the reference direction.
        assert np.dot(stain.hematoxylin, REFERENCE_STAIN.hematoxylin) > 0.9
        assert np.dot(stain.eosin, REFERENCE_STAIN.eosin) > 0.9


def test_stain_to_dict_is_json_serialisable() -> None:
    as_dict = site_stain(1, seed=0).to_dict()
    restored = StainProfile(**json.loads(json.dumps(as_dict)))
    assert restored == site_stain(1, seed=0)


def test_sites_differ_in_colour() -> None:
    sites = synthetic_sites(2, train_tiles=24, test_tiles=0, tile_size=32, seed=0)
    means = [site.train.images.mean(dim=(0, 2, 3)) for site in sites]
    assert torch.linalg.vector_norm(means[0] - means[1]).item() > 0.02


def test_same_site_index_and_seed_give_identical_sites() -> None:
    first = synthetic_sites(2, train_tiles=4, test_tiles=3, tile_size=16, seed=9)
    second = synthetic_sites(2, train_tiles=4, test_tiles=3, tile_size=16, seed=9)
    for a, b in zip(first, second, strict=True):
        assert a.name == b.name
        assert a.info == b.info
        assert torch.equal(a.train.images, b.train.images)
        assert torch.equal(a.test.masks, b.test.masks)


def test_sites_have_names_counts_and_info() -> None:
    sites = synthetic_sites(3, train_tiles=[2, 0, 5], test_tiles=1, tile_size=16, seed=4)
    assert [site.name for site in sites] == ["site-0", "site-1", "site-2"]
    assert [len(site.train) for site in sites] == [2, 0, 5]
    assert all(len(site.test) == 1 for site in sites)
    assert sites[2].info == {"source": "synthetic", "stain": site_stain(2, 4).to_dict(), "seed": 4}
    json.dumps(sites[0].info)


def test_train_and_test_of_a_site_differ() -> None:
    (site,) = synthetic_sites(1, train_tiles=4, test_tiles=4, tile_size=16, seed=0)
    assert not torch.equal(site.train.images, site.test.images)


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_sensor_noise_zero_renders_the_same_tiles_without_their_noise(difficulty: str) -> None:
    """The noise is the last draw and is drawn whatever its size: without it the masks and every
    earlier draw are the same, and the difference is white noise of the default s.d. (0.02) wherever
    neither rendering is clipped."""
    noisy = synthesize_tiles(6, tile_size=32, seed=2, difficulty=difficulty)  # type: ignore[arg-type]
    clean = synthesize_tiles(6, tile_size=32, seed=2, difficulty=difficulty, sensor_noise=0.0)  # type: ignore[arg-type]
    assert torch.equal(noisy.masks, clean.masks)
    assert not torch.equal(noisy.images, clean.images)
    inside = (noisy.images > 0) & (noisy.images < 1) & (clean.images > 0) & (clean.images < 1)
    residual = (noisy.images - clean.images)[inside].double()
    assert inside.float().mean() > 0.9
    # 18,000+ samples of N(0, 0.02²): the s.d.'s standard error is 1e-4, the mean's 1.5e-4.
    assert abs(residual.std().item() - 0.02) < 6e-4
    assert abs(residual.mean().item()) < 6e-4
    # Neighbouring pixels' noise is independent (the blur comes before the noise).
    grid = (noisy.images - clean.images).double()
    lag = (grid[..., 1:] * grid[..., :-1]).mean() / grid.pow(2).mean()
    assert abs(lag.item()) < 0.03


def test_hematoxylin_channel_recovers_nuclei() -> None:
    stain = site_stain(1, seed=0)
    tiles = synthesize_tiles(32, stain=stain, seed=2)
    inside = tiles.masks.bool()
    for basis in (stain, REFERENCE_STAIN):
        hematoxylin = hematoxylin_channel(tiles.images, basis)
        assert hematoxylin.shape == tiles.masks.shape
        assert hematoxylin[inside].mean() > 2 * hematoxylin[~inside].mean()


def test_hematoxylin_channel_inverts_pure_stains() -> None:
    # A noiseless pixel of known concentrations unmixes exactly.
    stain = site_stain(0, seed=1)
    od = 0.7 * np.asarray(stain.hematoxylin) + 0.3 * np.asarray(stain.eosin)
    pixel = torch.tensor(np.exp(-od), dtype=torch.float64).reshape(1, 3, 1, 1)
    assert hematoxylin_channel(pixel, stain).item() == pytest.approx(0.7, abs=1e-9)


def test_hematoxylin_channel_rejects_non_rgb() -> None:
    with pytest.raises(DataError, match=r"\(N, 3, H, W\)"):
        hematoxylin_channel(torch.zeros(2, 1, 8, 8))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: synthesize_tiles(-1), r"`n` must be an integer >= 0, but got -1"),
        (lambda: synthesize_tiles(2, tile_size=4), r"`tile_size` must be an integer >= 8, but got 4"),
        (lambda: synthetic_sites(0, 2, 2), r"`n_sites` must be an integer >= 1, but got 0"),
        (lambda: synthetic_sites(2, [1, 2, 3], 2), r"one count per site \(2\), but got 3"),
        (lambda: synthetic_sites(2, [1, -2], 2), r"`train_tiles` must be an integer >= 0"),
        (lambda: synthetic_sites(1, 2, -1), r"`test_tiles` must be an integer >= 0"),
        (lambda: site_stain(-1, 0), r"`site_index` must be an integer >= 0"),
        (lambda: synthesize_tiles(2, sensor_noise=-0.1), r"`sensor_noise` must be >= 0, but got -0.1"),
        (lambda: synthesize_tiles(2, sensor_noise=float("nan")), r"`sensor_noise` must be >= 0, but got nan"),
        (
            lambda: StainProfile((0.0, 0.0, 0.0), (0.1, 0.9, 0.1)),
            r"`hematoxylin` must be 3 non-negative numbers",
        ),
        (
            lambda: StainProfile((0.6, 0.7, 0.3), (0.1, 0.9, 0.1), h_scale=-1.0),
            r"`h_scale` must be >= 0, but got -1.0",
        ),
    ],
)
def test_bad_arguments_raise_config_error(call: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()  # type: ignore[operator]


def test_save_tile_grid_writes_a_png_of_the_documented_size(tmp_path: Path) -> None:
    tiles = synthesize_tiles(5, tile_size=16, seed=0)
    path = tmp_path / "grid.png"
    save_tile_grid(tiles, path, columns=2, scale=2)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.mode == "RGB"
        # 2 columns of (tile | overlay) pairs, 3 rows, 2 px gutters.
        assert image.size == (2 * (2 * 16 * 2 + 2) + 2, 3 * (16 * 2 + 2) + 2)


def test_save_tile_grid_rejects_empty_tiles(tmp_path: Path) -> None:
    empty = TileSet(torch.zeros(0, 3, 8, 8), torch.zeros(0, 1, 8, 8))
    with pytest.raises(DataError, match="empty"):
        save_tile_grid(empty, tmp_path / "grid.png")
