"""Tests for the image-folder loader: layouts, conversions, tiling and every bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from feddp_eval.data.folder import (
    find_pairs,
    load_folder_sites,
    read_mask,
)
from feddp_eval.data.types import Site
from feddp_eval.errors import ConfigError, DataError


def _write_pair(folder: Path, stem: str, size: int = 64, *, foreground: bool = True) -> None:
    """An RGB image (red varies with stem) and a 0/255 mask with a drawn square."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    shade = sum(map(ord, stem)) % 200 + 20
    Image.new("RGB", (size, size), (shade, 100, 200)).save(folder / "images" / f"{stem}.png")
    mask = Image.new("L", (size, size), 0)
    if foreground:
        ImageDraw.Draw(mask).rectangle((4, 4, size // 2, size // 2), fill=255)
    mask.save(folder / "masks" / f"{stem}.png")


def _stems(site: Site, key: str = "images") -> list[str]:
    stems = site.info[key]
    assert isinstance(stems, list)
    return stems


def _one_line_error(excinfo: pytest.ExceptionInfo[DataError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- layouts


def test_per_site_layout_names_sites_by_folder_and_splits_by_image(tmp_path: Path) -> None:
    for stem in "abcd":
        _write_pair(tmp_path / "beta", stem)
    for stem in "abcdefgh":
        _write_pair(tmp_path / "alpha", stem)
    (tmp_path / "notes").mkdir()  # a folder without images/ or masks/ is not a site

    sites = load_folder_sites(tmp_path, tile_size=32, test_fraction=0.25)

    assert [site.name for site in sites] == ["alpha", "beta"]
    alpha, beta = sites
    # 64x64 images, 32 px tiles: 4 crops per image; 8 images -> 2 test, 4 -> 1 test.
    assert (len(alpha.train), len(alpha.test)) == (6 * 4, 2 * 4)
    assert (len(beta.train), len(beta.test)) == (3 * 4, 1 * 4)
    assert alpha.info["source"] == "folder"
    assert alpha.info["path"] == str(tmp_path / "alpha")
    assert alpha.info["images"] == list("abcdefgh")
    assert set(_stems(alpha, "test_images")) < set(_stems(alpha))
    assert len(_stems(alpha, "test_images")) == 2


def test_train_and_test_never_share_a_source_image(tmp_path: Path) -> None:
    for stem in "abcdef":
        _write_pair(tmp_path, stem)
    (site,) = load_folder_sites(tmp_path, tile_size=32, test_fraction=0.5)
    train_reds = set(site.train.images[:, 0, 0, 0].mul(255).round().tolist())
    test_reds = set(site.test.images[:, 0, 0, 0].mul(255).round().tolist())
    assert train_reds.isdisjoint(test_reds)
    assert len(train_reds) == len(test_reds) == 3


def test_single_folder_is_split_evenly_and_deterministically(tmp_path: Path) -> None:
    for index in range(11):
        _write_pair(tmp_path, f"tile{index:02d}", size=32)

    sites = load_folder_sites(tmp_path, tile_size=32, n_sites=3, seed=7)
    again = load_folder_sites(tmp_path, tile_size=32, n_sites=3, seed=7)
    other = load_folder_sites(tmp_path, tile_size=32, n_sites=3, seed=8)

    assert [site.name for site in sites] == ["site-0", "site-1", "site-2"]
    assert [len(_stems(site)) for site in sites] == [4, 4, 3]
    assert [len(s.train) + len(s.test) for s in sites] == [4, 4, 3]
    all_stems = sorted(stem for site in sites for stem in _stems(site))
    assert all_stems == [f"tile{index:02d}" for index in range(11)]
    assert all(site.info["path"] == str(tmp_path) for site in sites)
    for first, second in zip(sites, again, strict=True):
        assert first.info == second.info
        assert torch.equal(first.train.images, second.train.images)
        assert torch.equal(first.test.masks, second.test.masks)
    assert [s.info["images"] for s in sites] != [s.info["images"] for s in other]


def test_single_folder_defaults_to_one_site(tmp_path: Path) -> None:
    for stem in "abcd":
        _write_pair(tmp_path, stem, size=32)
    (site,) = load_folder_sites(tmp_path, tile_size=32)
    assert site.name == "site-0"
    assert (len(site.train), len(site.test)) == (3, 1)


def test_n_sites_must_match_per_site_folders(tmp_path: Path) -> None:
    for name in ("a", "b"):
        for stem in "xy":
            _write_pair(tmp_path / name, stem, size=32)
    with pytest.raises(ConfigError, match="2 site folders"):
        load_folder_sites(tmp_path, tile_size=32, n_sites=3)
    assert len(load_folder_sites(tmp_path, tile_size=32, n_sites=2)) == 2


def test_too_many_sites_for_the_images_is_an_error_with_the_limit(tmp_path: Path) -> None:
    for stem in "abcde":
        _write_pair(tmp_path, stem, size=32)
    with pytest.raises(DataError, match=r"n_sites <= 2") as excinfo:
        load_folder_sites(tmp_path, tile_size=32, n_sites=3)
    assert str(tmp_path) in _one_line_error(excinfo)


def test_site_with_one_image_cannot_be_split(tmp_path: Path) -> None:
    _write_pair(tmp_path / "lonely", "only", size=32)
    with pytest.raises(DataError, match=r"site 'lonely'.*at least 2") as excinfo:
        load_folder_sites(tmp_path, tile_size=32)
    assert "add images" in _one_line_error(excinfo)


def test_bad_options_are_listed_together(tmp_path: Path) -> None:
    _write_pair(tmp_path, "a")
    with pytest.raises(ConfigError) as excinfo:
        load_folder_sites(tmp_path, tile_size=0, test_fraction=1.0, mode="tile", n_sites=0)
    assert len(excinfo.value.problems) == 4
    assert "crop, resize" in str(excinfo.value)


# --------------------------------------------------------------------------- tiling


def test_crop_cuts_non_overlapping_tiles_and_drops_the_remainder(tmp_path: Path) -> None:
    for stem in "ab":
        _write_pair(tmp_path, stem, size=40)
    (site,) = load_folder_sites(tmp_path, tile_size=16, test_fraction=0.5, mode="crop")
    # 40 // 16 = 2 per side: 4 tiles per image.
    assert tuple(site.train.images.shape) == (4, 3, 16, 16)
    assert tuple(site.train.masks.shape) == (4, 1, 16, 16)
    assert site.train.images.dtype == site.train.masks.dtype == torch.float32


def test_crop_tiles_follow_the_mask_in_row_major_order(tmp_path: Path) -> None:
    for stem in "ab":
        _write_pair(tmp_path, stem, size=64)  # square over pixels 4..32 in both axes
    (site,) = load_folder_sites(tmp_path, tile_size=32, test_fraction=0.5)
    per_tile = site.train.masks.sum(dim=(1, 2, 3)).tolist()
    assert per_tile == [28 * 28, 28, 28, 1]


def test_crop_scales_small_images_up_keeping_aspect_ratio(tmp_path: Path) -> None:
    for stem in "ab":
        _write_pair(tmp_path, stem, size=20)
    (site,) = load_folder_sites(tmp_path, tile_size=32, test_fraction=0.5)
    assert tuple(site.train.images.shape) == (1, 3, 32, 32)
    assert set(site.train.masks.unique().tolist()) == {0.0, 1.0}

    wide = tmp_path / "wide"
    (wide / "images").mkdir(parents=True)
    (wide / "masks").mkdir()
    for stem in "ab":
        Image.new("RGB", (40, 10), (10, 20, 30)).save(wide / "images" / f"{stem}.png")
        Image.new("L", (40, 10), 1).save(wide / "masks" / f"{stem}.png")
    (site,) = load_folder_sites(wide, tile_size=16, test_fraction=0.5)
    assert tuple(site.train.images.shape) == (4, 3, 16, 16)  # 40x10 -> 64x16


def test_resize_makes_one_tile_per_image(tmp_path: Path) -> None:
    _write_pair(tmp_path, "a", size=40)
    _write_pair(tmp_path, "b", size=64)
    _write_pair(tmp_path, "c", size=20)
    (site,) = load_folder_sites(tmp_path, tile_size=16, test_fraction=0.34, mode="resize")
    assert (len(site.train), len(site.test)) == (2, 1)
    assert tuple(site.test.images.shape) == (1, 3, 16, 16)
    masks = torch.cat([site.train.masks, site.test.masks])
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    images = torch.cat([site.train.images, site.test.images])
    assert images.min() >= 0.0 and images.max() <= 1.0


# --------------------------------------------------------------------------- conversions


def test_loaded_masks_are_binary_for_0_1_masks(tmp_path: Path) -> None:
    for stem in "ab":
        _write_pair(tmp_path, stem, size=32)
        mask = np.zeros((32, 32), dtype=np.uint8)
        mask[:10, :10] = 1
        Image.fromarray(mask).save(tmp_path / "masks" / f"{stem}.png")
    (site,) = load_folder_sites(tmp_path, tile_size=32, test_fraction=0.5)
    assert set(site.train.masks.unique().tolist()) == {0.0, 1.0}
    assert site.train.masks.sum().item() == 100


# --------------------------------------------------------------------------- bad inputs


def test_empty_root_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images") as excinfo:
        load_folder_sites(tmp_path)
    assert str(tmp_path) in _one_line_error(excinfo)


def test_empty_images_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "readme.txt").write_text("not an image")
    with pytest.raises(DataError, match="no images in") as excinfo:
        find_pairs(tmp_path)
    assert str(tmp_path / "images") in _one_line_error(excinfo)


def test_missing_masks_dir_is_an_error(tmp_path: Path) -> None:
    _write_pair(tmp_path, "a")
    for path in (tmp_path / "masks").iterdir():
        path.unlink()
    (tmp_path / "masks").rmdir()
    with pytest.raises(DataError, match="missing directory") as excinfo:
        load_folder_sites(tmp_path)
    assert str(tmp_path / "masks") in _one_line_error(excinfo)


def test_missing_dir_in_a_site_folder_is_an_error(tmp_path: Path) -> None:
    _write_pair(tmp_path / "good", "a")
    _write_pair(tmp_path / "good", "b")
    (tmp_path / "bad" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="missing directory") as excinfo:
        load_folder_sites(tmp_path)
    assert str(tmp_path / "bad" / "masks") in _one_line_error(excinfo)


def test_image_without_mask_is_an_error(tmp_path: Path) -> None:
    _write_pair(tmp_path, "a")
    _write_pair(tmp_path, "b")
    (tmp_path / "masks" / "b.png").unlink()
    with pytest.raises(DataError, match=r"b\.png has no mask") as excinfo:
        load_folder_sites(tmp_path)
    assert "add the mask or remove the image" in _one_line_error(excinfo)


def test_mask_without_image_is_an_error(tmp_path: Path) -> None:
    _write_pair(tmp_path, "a")
    _write_pair(tmp_path, "b")
    (tmp_path / "images" / "a.png").unlink()
    with pytest.raises(DataError, match=r"a\.png has no image") as excinfo:
        find_pairs(tmp_path)
    _one_line_error(excinfo)


def test_pairs_match_by_stem_across_formats(tmp_path: Path) -> None:
    _write_pair(tmp_path, "b")
    (tmp_path / "images" / "a.jpg").write_bytes((tmp_path / "images" / "b.png").read_bytes())
    Image.new("L", (64, 64), 0).save(tmp_path / "masks" / "a.tif")
    pairs = find_pairs(tmp_path)
    assert [(image.name, mask.name) for image, mask in pairs] == [("a.jpg", "a.tif"), ("b.png", "b.png")]


def test_duplicate_stem_is_an_error(tmp_path: Path) -> None:
    _write_pair(tmp_path, "a")
    Image.new("RGB", (64, 64)).save(tmp_path / "images" / "a.tif")
    with pytest.raises(DataError, match=r"a\.png.*a\.tif") as excinfo:
        find_pairs(tmp_path)
    _one_line_error(excinfo)


def test_size_mismatch_names_both_sizes(tmp_path: Path) -> None:
    _write_pair(tmp_path, "a", size=64)
    _write_pair(tmp_path, "b", size=64)
    Image.new("L", (40, 32), 255).save(tmp_path / "masks" / "b.png")
    with pytest.raises(DataError, match=r"b\.png is 64x64.*b\.png is 40x32") as excinfo:
        load_folder_sites(tmp_path, tile_size=32)
    assert "mask at the image's size" in _one_line_error(excinfo)


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    _write_pair(tmp_path, "a")
    _write_pair(tmp_path, "x")
    (tmp_path / "images" / "x.png").write_bytes(b"\x00garbage\nbytes" * 10)
    with pytest.raises(DataError, match=r"cannot read .*x\.png") as excinfo:
        load_folder_sites(tmp_path, tile_size=32)
    assert "replace it" in _one_line_error(excinfo)


def test_truncated_mask_is_an_error(tmp_path: Path) -> None:
    _write_pair(tmp_path, "a")
    path = tmp_path / "masks" / "a.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=r"cannot read .*a\.png") as excinfo:
        read_mask(path)
    _one_line_error(excinfo)


def test_all_empty_masks_warn_but_load(tmp_path: Path) -> None:
    for stem in "ab":
        _write_pair(tmp_path, stem, size=32, foreground=False)
    with pytest.warns(UserWarning, match="no mask tile .* has a foreground pixel"):
        (site,) = load_folder_sites(tmp_path, tile_size=32)
    assert site.train.masks.sum().item() == 0


def test_some_empty_masks_do_not_warn(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    _write_pair(tmp_path, "a", size=32, foreground=False)
    _write_pair(tmp_path, "b", size=32)
    load_folder_sites(tmp_path, tile_size=32)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
