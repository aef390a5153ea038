"""``pannuke``: PanNuke (Gamper et al. 2019/2020) as its authors ship it.

Each fold is a folder (``Fold 1/images/fold1/images.npy``, ``.../types.npy``,
``Fold 1/masks/fold1/masks.npy`` in the download) holding

- ``images.npy``: (N, 256, 256, 3) RGB values in 0..255 (float64 in the download);
- ``masks.npy``: (N, 256, 256, 6) instance maps, one channel per nucleus class, the last channel
  background;
- ``types.npy``: (N,) tissue type of each tile (``"Breast"``, ``"Colon"``, ...).

Sites are folds (``site_by = "fold"``) or tissue types (``"tissue"``, pooled over folds); a tile's
foreground is a nucleus of any class. Each 256 px tile is one source image. Arrays are read with
``allow_pickle=False`` and memory-mapped, so a fold's 8 GB of masks never sits in memory at once.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from feddp_eval.data.formats import FORMATS
from feddp_eval.data.formats.base import DatasetFormat, LoadOptions, SiteGroup, Source, one_line
from feddp_eval.errors import DataError

FILES = ("images.npy", "masks.npy", "types.npy")
MASK_CHANNELS = 6  # five nucleus classes, then background
_FOLD = re.compile(r"fold[\s_-]*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Fold:
    """One fold's three arrays, their length N and tile side."""

    name: str
    images: Path
    masks: Path
    types: Path
    size: int


@FORMATS.register("pannuke")
class PanNuke(DatasetFormat):
    summary = (
        "PanNuke folds: images.npy, masks.npy (6 instance channels), types.npy; sites = folds or tissues"
    )
    site_by = ("fold", "tissue")

    def groups(self, root: Path, options: LoadOptions) -> list[SiteGroup]:
        folds = find_folds(root)
        if self.chosen_site_by(options) == "fold":
            return [
                SiteGroup(f.name, str(f.images.parent), tuple(_source(f, i) for i in range(f.size)))
                for f in folds
            ]
        by_tissue: dict[str, list[Source]] = defaultdict(list)
        for fold in folds:
            for index, tissue in enumerate(_tissues(fold)):
                by_tissue[tissue].append(_source(fold, index))
        return [SiteGroup(t, str(root), tuple(s)) for t, s in sorted(by_tissue.items())]


def find_folds(root: Path) -> list[Fold]:
    """Every fold under ``root``, by the fold number in its path, with its three arrays checked."""
    found: dict[str, dict[str, Path]] = defaultdict(dict)
    for name in FILES:
        for path in sorted(root.rglob(name)):
            fold = _fold_name(path, root)
            if name in found[fold]:
                raise DataError(
                    f"{found[fold][name]} and {path} are both {name} of {fold}; keep one copy of each fold"
                )
            found[fold][name] = path
    if not found:
        raise DataError(
            f"no PanNuke fold under {root}: expected 'Fold 1/images/fold1/images.npy', "
            f"'.../types.npy' and 'Fold 1/masks/fold1/masks.npy' as in the download; unzip the folds there"
        )
    return [_checked_fold(name, files) for name, files in sorted(found.items())]


def _fold_name(path: Path, root: Path) -> str:
    for part in reversed(path.relative_to(root).parts[:-1]):
        if match := _FOLD.search(part):
            return f"fold{int(match.group(1))}"
    raise DataError(
        f"{path} is in no fold folder (a folder named like 'Fold 1' or 'fold1'); keep the folds' folders"
    )


def _checked_fold(name: str, files: dict[str, Path]) -> Fold:
    missing = [f for f in FILES if f not in files]
    if missing:
        have = next(iter(files.values()))
        raise DataError(
            f"{name} has {', '.join(sorted(files))} ({have.parent}) but no {', '.join(missing)}; "
            f"unzip the whole fold"
        )
    images, masks = _open(files["images.npy"]), _open(files["masks.npy"])
    n = images.shape[0] if images.ndim == 4 else -1
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] < 2 or images.shape[2] < 2:
        raise DataError(
            f"{files['images.npy']} has shape {images.shape}; PanNuke images are (N, 256, 256, 3)"
        )
    expected = (n, images.shape[1], images.shape[2], MASK_CHANNELS)
    if masks.shape != expected:
        raise DataError(
            f"{files['masks.npy']} has shape {masks.shape} but {files['images.npy']} needs {expected} "
            f"(5 nucleus classes + background per pixel); use the fold's own masks.npy"
        )
    types = _types(files["types.npy"])
    if types.shape != (n,):
        raise DataError(
            f"{files['types.npy']} has shape {types.shape} but the fold has {n} tiles; "
            f"use the fold's own types.npy"
        )
    return Fold(name, files["images.npy"], files["masks.npy"], files["types.npy"], n)


def _open(path: Path) -> np.ndarray:
    """A memory-mapped array, never unpickled."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # object arrays, a damaged header, not a .npy at all
        raise DataError(f"cannot read {path} ({one_line(exc)}); replace it with the authors' file") from None
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"{path} holds {array.dtype} values, not numbers; replace it with the authors' file")
    return array


def _types(path: Path) -> np.ndarray:
    try:
        types = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"cannot read {path} ({one_line(exc)}); replace it with the authors' file") from None
    if types.dtype.kind not in "US":
        raise DataError(f"{path} holds {types.dtype} values; PanNuke tissue types are strings")
    return types


def _tissues(fold: Fold) -> list[str]:
    return [str(t.decode() if isinstance(t, bytes) else t) for t in _types(fold.types)]


def _source(fold: Fold, index: int) -> Source:
    return Source(f"{fold.name}-{index:05d}", lambda: _read(fold, index))


def _read(fold: Fold, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Tile ``index``: RGB in [0, 1] (values / 255) and any nucleus class as foreground."""
    pixels = np.asarray(_open(fold.images)[index], dtype=np.float32)
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
        low, high = float(np.nanmin(pixels)), float(np.nanmax(pixels))
        raise DataError(
            f"{fold.images} tile {index} holds values in [{low:g}, {high:g}], outside 0..255; "
            f"replace it with the authors' file"
        )
    classes = np.asarray(_open(fold.masks)[index, :, :, : MASK_CHANNELS - 1])
    foreground: np.ndarray = np.asarray((classes > 0).any(axis=2))
    return (pixels / np.float32(255.0)).astype(np.float32), foreground
