"""Read one image or mask file into a float array: PNG, JPEG and TIFF, 8/16-bit, grey or colour."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from feddp_eval.errors import DataError

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff"})
SUFFIX_LIST = "/".join(sorted(IMAGE_SUFFIXES))
_TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
# Modes whose channels are not RGB(A) and must be converted before reading values.
_CONVERT_TO_RGB = frozenset({"CMYK", "YCbCr", "LAB", "HSV"})
# PIL keeps 16-bit grey in int32 ("I") on some versions; values above this are not 16-bit.
_UINT16_MAX = 65535


def read_image(path: Path) -> np.ndarray:
    """Read one image file as RGB in [0, 1].

    RGBA is composited on white, grey is repeated to 3 channels, unsigned integers
    are divided by their dtype's maximum (255 for 8-bit, 65535 for 16-bit).

    Args:
        path: a PNG, JPEG or TIFF file.

    Returns:
        (H, W, 3) float32 in [0, 1].

    Raises:
        DataError: the file cannot be read or holds values that are not an image.
    """
    path = Path(path)
    raw = _read_array(path, for_mask=False)
    _warn_if_not_colour_8bit(raw, path)
    return _to_rgb(_unit_float(raw, path), path)


class ConversionWarning(UserWarning):
    """An image was converted on reading in a way that H&E data should not need (grey, 16-bit)."""


def _warn_if_not_colour_8bit(array: np.ndarray, path: Path) -> None:
    """H&E tiles are 8-bit colour: say so when an image is grey or deeper, and how it was read."""
    grey = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 2))
    deep = (
        array.dtype.kind in "ui"
        and array.dtype.itemsize > 1
        and (array.dtype == np.uint16 or array.max() > 255)
    )
    if grey:
        warnings.warn(
            ConversionWarning(f"{path} is grey: read as RGB by repeating its one channel"), stacklevel=3
        )
    if deep:
        warnings.warn(
            ConversionWarning(f"{path} is 16-bit: read as RGB in [0, 1] by dividing by 65535"), stacklevel=3
        )


def read_mask(path: Path) -> np.ndarray:
    """Read one mask file as foreground (any value > 0) versus background.

    Palette images are read as their indices (index 0 is background); for RGB(A)
    masks a pixel is foreground when any colour channel is > 0 (alpha is ignored).

    Args:
        path: a PNG, JPEG or TIFF file.

    Returns:
        (H, W) bool.

    Raises:
        DataError: the file cannot be read or is not a 2-D mask.
    """
    path = Path(path)
    array = _read_array(path, for_mask=True)
    if array.ndim == 3:
        channels = array.shape[2]
        array = array[..., :1] if channels == 2 else array[..., :3]
        array = np.asarray((array > 0).any(axis=2))
    if array.ndim != 2:
        raise DataError(f"mask {path} has shape {array.shape}; save it as a single 2-D image (grey or RGB)")
    return np.asarray(array > 0, dtype=bool)


def _read_array(path: Path, *, for_mask: bool) -> np.ndarray:
    """Raw pixel array of ``path``: PIL first, tifffile for TIFFs PIL cannot decode."""
    try:
        return _pil_array(path, for_mask=for_mask)
    except Exception as pil_error:
        if path.suffix.lower() in _TIFF_SUFFIXES:
            tiff = _tifffile_array(path)
            if tiff is not None:
                return tiff
        # One line, and without repeating the path that PIL puts in its own message.
        reason = " ".join(str(pil_error).replace(str(path), path.name).split()) or type(pil_error).__name__
        raise DataError(
            f"cannot read {path} ({reason}); replace it with a valid PNG, JPEG or TIFF "
            f"or remove it together with its pair"
        ) from pil_error


def _pil_array(path: Path, *, for_mask: bool) -> np.ndarray:
    with Image.open(path) as opened:
        opened.load()
        image: Image.Image = opened
        if image.mode in _CONVERT_TO_RGB:
            image = image.convert("RGB")
        elif image.mode in ("P", "PA") and not for_mask:
            image = image.convert("RGBA")
        return np.array(image)


def _tifffile_array(path: Path) -> np.ndarray | None:
    """First page of a TIFF via tifffile (float or multi-sample TIFFs), or None."""
    try:
        import tifffile
    except ImportError:
        return None
    try:
        with tifffile.TiffFile(path) as tiff:
            array = tiff.pages[0].asarray()
    except Exception:
        return None
    # Planar TIFFs come back channels-first: (C, H, W) -> (H, W, C).
    if array.ndim == 3 and array.shape[0] <= 4 < array.shape[2]:
        array = np.moveaxis(array, 0, -1)
    return array


def _unit_float(array: np.ndarray, path: Path) -> np.ndarray:
    """Scale an image array to float32 in [0, 1] by its dtype."""
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.unsignedinteger):
        return (array / np.iinfo(array.dtype).max).astype(np.float32)
    if np.issubdtype(array.dtype, np.signedinteger):
        return _signed_to_unit(array, path)
    if np.issubdtype(array.dtype, np.floating):
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        if np.isfinite(array).all() and low >= 0.0 and high <= 1.0:
            return array.astype(np.float32)
        raise DataError(
            f"image {path} holds floats in [{low}, {high}]; save it as 8- or 16-bit or as floats in [0, 1]"
        )
    raise DataError(f"image {path} has unsupported pixel type {array.dtype}; save it as 8-bit RGB")


def _signed_to_unit(array: np.ndarray, path: Path) -> np.ndarray:
    """Signed integers (PIL mode "I" for 16-bit grey) are read as 16-bit values."""
    low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
    if low < 0 or high > _UINT16_MAX:
        raise DataError(
            f"image {path} holds integers in [{low}, {high}], outside 16-bit range; "
            f"save it as 8- or 16-bit unsigned"
        )
    return (array / _UINT16_MAX).astype(np.float32)


def _to_rgb(array: np.ndarray, path: Path) -> np.ndarray:
    """(H, W) or (H, W, C) in [0, 1] to (H, W, 3): grey repeated, alpha composited on white."""
    if array.ndim == 2:
        array = array[..., None]
    channels = array.shape[2] if array.ndim == 3 else 0
    if channels in (2, 4):
        alpha = array[..., -1:]
        array = array[..., :-1] * alpha + (1.0 - alpha)
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise DataError(
            f"image {path} has shape {array.shape}; save it as grey, RGB or RGBA (H, W[, C]) with C in 1..4"
        )
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(np.clip(array, 0.0, 1.0), dtype=np.float32)
