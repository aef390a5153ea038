"""Tests for reading one image or mask file: formats, bit depths, channels, and bad values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from feddp_eval.data.folder import IMAGE_SUFFIXES, read_image, read_mask
from feddp_eval.errors import DataError


def test_suffixes() -> None:
    assert frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"}) == IMAGE_SUFFIXES


def test_rgb_8bit_divides_by_255(tmp_path: Path) -> None:
    path = tmp_path / "rgb.png"
    Image.new("RGB", (5, 4), (255, 0, 51)).save(path)
    image = read_image(path)
    assert image.shape == (4, 5, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image[0, 0], [1.0, 0.0, 0.2], atol=1e-6)


def test_grey_is_repeated_to_three_channels(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.new("L", (6, 6), 128).save(path)
    image = read_image(path)
    assert image.shape == (6, 6, 3)
    np.testing.assert_allclose(image, 128 / 255, atol=1e-6)


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    opaque, half = tmp_path / "opaque.png", tmp_path / "half.png"
    Image.new("RGBA", (4, 4), (0, 51, 255, 255)).save(opaque)
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(half)
    np.testing.assert_allclose(read_image(opaque)[1, 1], [0.0, 0.2, 1.0], atol=1e-6)
    np.testing.assert_allclose(read_image(half), 1.0)  # fully transparent -> white


def test_16bit_png_divides_by_65535(tmp_path: Path) -> None:
    full, half = tmp_path / "full.png", tmp_path / "half.png"
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(full)
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(half)
    np.testing.assert_allclose(read_image(full), 1.0)
    np.testing.assert_allclose(read_image(half), 32768 / 65535, atol=1e-6)
    assert read_image(full).shape == (8, 8, 3)


def test_jpeg_and_tiff_read_to_unit_range(tmp_path: Path) -> None:
    jpeg, tiff = tmp_path / "tile.jpg", tmp_path / "tile.tiff"
    Image.new("RGB", (16, 16), (200, 100, 50)).save(jpeg, quality=95)
    Image.new("RGB", (16, 16), (200, 100, 50)).save(tiff)
    np.testing.assert_allclose(read_image(tiff)[3, 3], [200 / 255, 100 / 255, 50 / 255], atol=1e-6)
    # JPEG is lossy: a flat colour comes back within a few levels.
    np.testing.assert_allclose(read_image(jpeg)[8, 8], [200 / 255, 100 / 255, 50 / 255], atol=4 / 255)


def test_16bit_tiff_divides_by_65535(tmp_path: Path) -> None:
    path = tmp_path / "grey16.tif"
    Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16)).save(path)
    np.testing.assert_allclose(read_image(path), 1.0)


def test_float_tiff_in_unit_range_is_read_as_is(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, np.full((8, 8, 3), 0.25, dtype=np.float32), photometric="rgb")
    np.testing.assert_allclose(read_image(path), 0.25)


def test_planar_16bit_rgb_tiff_comes_back_channels_last(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "planar.tif"
    planes = np.stack([np.full((6, 7), value, dtype=np.uint16) for value in (65535, 0, 13107)])
    tifffile.imwrite(path, planes, photometric="rgb", planarconfig="separate")
    image = read_image(path)
    assert image.shape == (6, 7, 3)
    np.testing.assert_allclose(image[2, 2], [1.0, 0.0, 0.2], atol=1e-3)


def test_float_tiff_outside_unit_range_is_an_error(tmp_path: Path) -> None:
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "hdr.tif"
    tifffile.imwrite(path, np.full((8, 8, 3), 2.0, dtype=np.float32), photometric="rgb")
    with pytest.raises(DataError, match=r"hdr\.tif holds floats") as excinfo:
        read_image(path)
    assert "\n" not in str(excinfo.value)  # one line for the CLI


@pytest.mark.parametrize("on_value", [255, 1])
def test_mask_values_above_zero_are_foreground(tmp_path: Path, on_value: int) -> None:
    path = tmp_path / "mask.png"
    values = np.zeros((6, 6), dtype=np.uint8)
    values[2:4, 1:5] = on_value
    Image.fromarray(values).save(path)
    mask = read_mask(path)
    assert mask.dtype == bool and mask.shape == (6, 6)
    np.testing.assert_array_equal(mask, values > 0)


def test_rgb_mask_is_foreground_where_any_channel_is_on(tmp_path: Path) -> None:
    path = tmp_path / "mask.png"
    values = np.zeros((4, 4, 3), dtype=np.uint8)
    values[0, 0] = (0, 0, 7)
    values[1, 1] = (255, 0, 0)
    Image.fromarray(values).save(path)
    expected = np.zeros((4, 4), dtype=bool)
    expected[0, 0] = expected[1, 1] = True
    np.testing.assert_array_equal(read_mask(path), expected)
