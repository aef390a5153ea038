"""What every real-data loader shares: tiling one source image, the train/test split by source image,
option checks, and the empty-foreground warning.

A *source image* is one picture an author annotated (a PNG of a folder, a MoNuSeg TIFF, a PanNuke
tile). Its crops always land in the same split, so a held-out tile never shares pixels with a
training tile.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from feddp_eval.data.types import Site
from feddp_eval.errors import ConfigError, DataError

MODES: tuple[str, ...] = ("crop", "resize")
MIN_SIDE = 2  # px: a 1-pixel image scaled up to a tile holds one colour and no structure
MAX_MAGNIFICATION = 2.0  # a tile may scale its image up by at most this: more invents the structure it learns


def check_options(*, tile_size: int, n_sites: int | None, test_fraction: float, mode: str) -> None:
    """Refuse out-of-range loader options, all of them at once (ConfigError)."""
    problems = []
    if isinstance(tile_size, bool) or not isinstance(tile_size, int) or tile_size < 1:
        problems.append(f"`tile_size` must be an integer >= 1, but got {tile_size!r}")
    if n_sites is not None and (isinstance(n_sites, bool) or not isinstance(n_sites, int) or n_sites < 1):
        problems.append(f"`n_sites` must be an integer >= 1 or None, but got {n_sites!r}")
    if not isinstance(test_fraction, int | float) or not 0.0 < test_fraction < 1.0:
        problems.append(f"`test_fraction` must be in (0, 1), but got {test_fraction!r}")
    if mode not in MODES:
        problems.append(f"`mode` must be one of {', '.join(MODES)}, but got {mode!r}")
    if problems:
        raise ConfigError(problems)


def check_image_and_mask(image: np.ndarray, mask: np.ndarray, *, image_name: str, mask_name: str) -> None:
    """Refuse an image too small to tile, or a mask whose size is not the image's (DataError)."""
    if min(image.shape[:2]) < MIN_SIDE:
        height, width = image.shape[:2]
        raise DataError(
            f"image {image_name} is {width}x{height} px: too small to tile (it would become flat colour); "
            f"remove it or use images at least {MIN_SIDE} px on each side"
        )
    if image.shape[:2] != mask.shape:
        ih, iw = image.shape[:2]
        mh, mw = mask.shape[:2]
        raise DataError(
            f"image {image_name} is {iw}x{ih} (WxH) but mask {mask_name} is {mw}x{mh}; "
            f"save the mask at the image's size"
        )


# --------------------------------------------------------------------------- tiling


def tile_pair(
    image: np.ndarray, mask: np.ndarray, *, tile_size: int, mode: str, name: str = "image"
) -> tuple[Tensor, Tensor]:
    """Cut or resize one source image and its mask into tiles.

    Args:
        image: (H, W, 3) float32 in [0, 1].
        mask: (H, W) bool (foreground).
        tile_size: side T of the tiles.
        mode: ``crop``: non-overlapping T x T crops in row-major order, the edge remainder dropped
            (an image smaller than T is first scaled up, keeping its aspect ratio); ``resize``: the
            whole image resized to one T x T tile.

    Returns:
        (n, 3, T, T) float32 images and (n, 1, T, T) float32 masks in {0, 1}.

    Raises:
        DataError: the image (``name``) would be magnified more than :data:`MAX_MAGNIFICATION` times
            to fill a tile: a model trained on it learns interpolation, and its Dice means nothing.
    """
    side = min(mask.shape)
    if side * MAX_MAGNIFICATION < tile_size:
        height, width = mask.shape
        raise DataError(
            f"{name} is {width}x{height} px: a {tile_size} px tile would magnify it "
            f"{tile_size / side:.3g}x (at most {MAX_MAGNIFICATION:g}x); use a tile_size of at most "
            f"{int(side * MAX_MAGNIFICATION)} or larger images"
        )
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    labels = torch.from_numpy(np.ascontiguousarray(mask)).to(torch.float32)[None]
    height, width = mask.shape
    if mode == "resize":
        pixels, labels = _resize(pixels, labels, (tile_size, tile_size))
        return pixels[None], labels[None]
    if min(height, width) < tile_size:
        pixels, labels = _resize(pixels, labels, _upscaled_size(height, width, tile_size))
    return _crop_grid(pixels, tile_size), _crop_grid(labels, tile_size)


def _upscaled_size(height: int, width: int, tile_size: int) -> tuple[int, int]:
    """Keep the aspect ratio and make the short side exactly ``tile_size``."""
    scale = tile_size / min(height, width)
    return max(tile_size, round(height * scale)), max(tile_size, round(width * scale))


def _resize(pixels: Tensor, labels: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Bilinear (antialiased) for the image, nearest for the mask, so it stays binary."""
    smooth = F.interpolate(pixels[None], size=size, mode="bilinear", align_corners=False, antialias=True)
    nearest = F.interpolate(labels[None], size=size, mode="nearest-exact")
    return smooth[0].clamp(0.0, 1.0), nearest[0]


def _crop_grid(array: Tensor, tile_size: int) -> Tensor:
    """Non-overlapping (C, T, T) crops in row-major order; the edge remainder is dropped."""
    channels, height, width = array.shape
    rows, cols = height // tile_size, width // tile_size
    grid = array[:, : rows * tile_size, : cols * tile_size]
    grid = grid.reshape(channels, rows, tile_size, cols, tile_size).permute(1, 3, 0, 2, 4)
    return grid.reshape(rows * cols, channels, tile_size, tile_size).contiguous()


# --------------------------------------------------------------------------- split by source image


def held_out_stems(
    name: str, where: str, stems: Sequence[str], *, test_fraction: float, seed: int
) -> set[str]:
    """The source images a site holds out for testing.

    Seeded by (seed, site name), so adding or removing another site does not change them; at least
    one image goes to each split.

    Raises:
        DataError: the site has fewer than 2 source images.
    """
    if len(stems) < 2:
        raise DataError(
            f"site {name!r} ({where}) has {len(stems)} image(s); a train/test split needs "
            f"at least 2: add images to it or use fewer sites"
        )
    n_test = min(len(stems) - 1, max(1, int(len(stems) * test_fraction + 0.5)))
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    order = torch.randperm(len(stems), generator=generator).tolist()
    return {stems[i] for i in order[:n_test]}


def deal(items: Sequence[object], n_sites: int, *, seed: int) -> list[list[int]]:
    """Indices of ``items`` dealt into ``n_sites`` parts by a seeded shuffle; part sizes differ by at
    most one, and each part is in the items' order."""
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    base, extra = divmod(len(items), n_sites)
    parts, start = [], 0
    for index in range(n_sites):
        size = base + (1 if index < extra else 0)
        parts.append(sorted(order[start : start + size]))
        start += size
    return parts


@contextmanager
def conversions_summarised(where: str) -> Iterator[None]:
    """Gather the per-image :class:`ConversionWarning` s of one data set into one warning per kind:
    ``12 of the images under ROOT are grey: …, e.g. ROOT/a.png``."""
    from feddp_eval.data.image_files import ConversionWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConversionWarning)
        yield
    kinds: dict[str, list[str]] = {}
    for record in caught:
        if not issubclass(record.category, ConversionWarning):
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)
            continue
        file, _, how = str(record.message).partition(" is ")
        kinds.setdefault(how, []).append(file)
    for how, files in kinds.items():
        warnings.warn(
            f"{len(files)} image(s) under {where} {'are' if len(files) > 1 else 'is'} {how} "
            f"(e.g. {files[0]}); H&E tiles are 8-bit colour, so check these are the images you meant",
            UserWarning,
            stacklevel=3,
        )


def warn_if_no_foreground(sites: list[Site], where: str) -> None:
    """Warn (not fail): empty masks are normal per file, but not across the whole data set."""
    if any(bool(site.train.masks.any() or site.test.masks.any()) for site in sites):
        return
    warnings.warn(
        f"no mask tile under {where} has a foreground pixel (value > 0); Dice will be "
        f"degenerate: check that the masks mark foreground with non-zero values",
        UserWarning,
        stacklevel=3,
    )
