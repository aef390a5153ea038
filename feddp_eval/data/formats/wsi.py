"""``wsi``: whole-slide regions (``.tif``/``.tiff``/``.svs``, pyramidal or flat) with masks, read with
tifffile at a pyramid level.

Layout, as for the image folder: ``regions/<name>.svs`` with ``masks/<name>.png`` (or ``.tif``)
at the region's full resolution (level 0), either in one folder dealt into ``data.sites`` sites,
or in one sub-folder per site. ``data.level`` picks the pyramid level (0 = full resolution; an
Aperio ``.svs`` keeps its reduced levels as further pages, a pyramidal TIFF as sub-IFDs; tifffile
reads both); the mask is brought to that level's size by nearest-neighbour sampling.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from feddp_eval.data.formats import FORMATS
from feddp_eval.data.formats.base import (
    DatasetFormat,
    LoadOptions,
    Reader,
    SiteGroup,
    Source,
    dealt,
    one_line,
)
from feddp_eval.errors import DataError

REGION_SUFFIXES = (".tif", ".tiff", ".svs")
MASK_SUFFIXES = (".png", ".tif", ".tiff")


@FORMATS.register("wsi")
class WholeSlideRegions(DatasetFormat):
    summary = "regions/*.tif|.svs (read at `level`) + masks/*.png at level 0; one folder or one per site"
    reads_levels = True

    def groups(self, root: Path, options: LoadOptions) -> list[SiteGroup]:
        level = options.level
        if (root / "regions").is_dir():
            return dealt(root, _sources(root, level), options)
        folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / "regions").is_dir())
        if not folders:
            raise DataError(
                f"no regions under {root}: expected {root}/regions + {root}/masks, or one sub-folder "
                f"per site with regions/ + masks/ inside"
            )
        return [SiteGroup(f.name, str(f), tuple(_sources(f, level))) for f in folders]

    def count_sites(self, root: Path, options: LoadOptions) -> int:
        if (root / "regions").is_dir():
            return int(options.n_sites or 1)
        return sum(1 for p in root.iterdir() if p.is_dir() and (p / "regions").is_dir())


def _sources(folder: Path, level: int) -> list[Source]:
    regions = [
        p
        for p in sorted((folder / "regions").iterdir())
        if p.suffix.lower() in REGION_SUFFIXES and not p.name.startswith(".")
    ]
    if not regions:
        raise DataError(f"no .tif/.tiff/.svs region in {folder / 'regions'}; put the regions there")
    return [Source(region.stem, _reader(region, _mask_of(region, folder), level)) for region in regions]


def _mask_of(region: Path, folder: Path) -> Path:
    for suffix in MASK_SUFFIXES:
        mask = folder / "masks" / f"{region.stem}{suffix}"
        if mask.is_file():
            return mask
    raise DataError(
        f"region {region} has no mask {folder / 'masks' / region.stem}.png (or .tif); "
        f"add the mask at the region's full resolution or remove the region"
    )


def _reader(region: Path, mask_path: Path, level: int) -> Reader:
    def read() -> tuple[np.ndarray, np.ndarray]:
        from feddp_eval.data.image_files import read_mask

        pixels, full = read_level(region, level)
        mask = read_mask(mask_path)
        if mask.shape != full:
            raise DataError(
                f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} (WxH) but region {region} is "
                f"{full[1]}x{full[0]} at level 0; save the mask at the region's full resolution"
            )
        rows = (np.arange(pixels.shape[0]) * full[0]) // pixels.shape[0]
        cols = (np.arange(pixels.shape[1]) * full[1]) // pixels.shape[1]
        return pixels, mask[np.ix_(rows, cols)]

    return read


def read_level(region: Path, level: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Pyramid level ``level`` of a region as (H, W, 3) float32 in [0, 1], and level 0's (H, W).

    Raises:
        DataError: the file is not a readable TIFF/SVS, has no such level, or is not RGB(A) or grey.
    """
    import tifffile

    try:
        with tifffile.TiffFile(region) as tiff:
            levels = tiff.series[0].levels
            if not 0 <= level < len(levels):
                raise DataError(
                    f"region {region} has {len(levels)} pyramid level(s) (0..{len(levels) - 1}), "
                    f"so `data.level` = {level} does not exist; pick one of them"
                )
            array, full = levels[level].asarray(), levels[0].shape
    except DataError:
        raise
    except Exception as exc:  # tifffile's errors on a damaged or non-TIFF file
        raise DataError(
            f"cannot read region {region} ({one_line(exc)}); replace it with a valid TIFF/SVS"
        ) from None
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.dtype != np.uint8:
        raise DataError(
            f"region {region} is {array.dtype} of shape {array.shape} at level {level}; "
            f"expected 8-bit RGB (H, W, 3) or RGBA"
        )
    return (array[..., :3] / np.float32(255)).astype(np.float32), (int(full[0]), int(full[1]))
