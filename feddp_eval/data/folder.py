"""Load real tiles from folders of ``images/`` + ``masks/`` pairs into sites.

Two layouts are accepted:

- one sub-folder per site: ``root/<site>/images`` and ``root/<site>/masks``;
- one folder, ``root/images`` and ``root/masks``, split across ``n_sites`` sites
  by a seeded shuffle of the pairs.

Images and masks are paired by file stem (``images/a.png`` with ``masks/a.tif``).
Each site is split into train and test by source image, so crops of one image
never land in both splits. Reading one file is :mod:`feddp_eval.data.image_files`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from feddp_eval.data.image_files import IMAGE_SUFFIXES, SUFFIX_LIST, read_image, read_mask
from feddp_eval.data.tiling import (
    MODES,
    check_image_and_mask,
    check_options,
    conversions_summarised,
    deal,
    held_out_stems,
    tile_pair,
    warn_if_no_foreground,
)
from feddp_eval.data.types import Site, TileSet
from feddp_eval.errors import ConfigError, DataError

__all__ = [
    "IMAGE_SUFFIXES",
    "MODES",
    "find_pairs",
    "load_folder_sites",
    "load_tiles",
    "read_image",
    "read_mask",
]

Pair = tuple[Path, Path]


# --------------------------------------------------------------------------- pairing


def find_pairs(folder: Path) -> list[Pair]:
    """Pair ``folder/images/*`` with ``folder/masks/*`` by file stem.

    Files whose suffix is not in ``IMAGE_SUFFIXES`` and hidden files are ignored.

    Args:
        folder: a directory holding ``images/`` and ``masks/``.

    Returns:
        (image path, mask path) pairs sorted by stem.

    Raises:
        DataError: a directory is missing, there are no images, a stem appears twice
            in one directory, or an image has no mask (or a mask no image).
    """
    folder = Path(folder)
    images = _files_by_stem(_subdir(folder, "images"))
    masks = _files_by_stem(_subdir(folder, "masks"))
    if not images:
        raise DataError(
            f"no images in {folder / 'images'} (looked for {SUFFIX_LIST} files); "
            f"put the tiles there or point to the right folder"
        )
    _check_unmatched(images, masks, folder / "masks", kind="image", other="mask")
    _check_unmatched(masks, images, folder / "images", kind="mask", other="image")
    return [(images[stem], masks[stem]) for stem in sorted(images)]


def _subdir(folder: Path, name: str) -> Path:
    path = folder / name
    if not path.is_dir():
        raise DataError(
            f"missing directory {path}; {folder} must hold images/ and masks/ "
            f"with one mask per image, paired by file name"
        )
    return path


def _files_by_stem(directory: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if not path.is_file():
            continue
        if path.stem in files:
            raise DataError(
                f"{files[path.stem]} and {path} share the stem {path.stem!r}; "
                f"rename or remove one so each stem names one file"
            )
        files[path.stem] = path
    return files


def _check_unmatched(
    have: dict[str, Path], other_files: dict[str, Path], other_dir: Path, *, kind: str, other: str
) -> None:
    missing = sorted(stem for stem in have if stem not in other_files)
    if not missing:
        return
    more = f" ({len(missing) - 1} more {kind}s lack one)" if len(missing) > 1 else ""
    raise DataError(
        f"{kind} {have[missing[0]]} has no {other}: expected {other_dir}/{missing[0]}"
        f".<{SUFFIX_LIST.replace('.', '')}>{more}; add the {other} or remove the {kind}"
    )


# --------------------------------------------------------------------------- reading


def _load_pair(image_path: Path, mask_path: Path) -> tuple[np.ndarray, np.ndarray]:
    image, mask = read_image(image_path), read_mask(mask_path)
    check_image_and_mask(image, mask, image_name=str(image_path), mask_name=str(mask_path))
    return image, mask


# --------------------------------------------------------------------------- sites


def load_folder_sites(
    root: str | Path,
    *,
    tile_size: int = 64,
    n_sites: int | None = None,
    test_fraction: float = 0.25,
    mode: str = "crop",
    seed: int = 0,
) -> list[Site]:
    """Load tiled sites from a folder of image/mask pairs.

    If ``root`` holds ``images/`` or ``masks/``, its pairs are shuffled with ``seed``
    and dealt into ``n_sites`` (default 1) sites named ``site-0``, ``site-1``, ...
    whose sizes differ by at most one image. Otherwise every sub-directory holding
    ``images/`` or ``masks/`` is one site, named after the sub-directory.

    Args:
        root: the data folder.
        tile_size: side T of the square tiles, in pixels.
        n_sites: number of sites for the single-folder layout; with per-site
            sub-folders it must be None or equal to their count.
        test_fraction: share of each site's source images held out for testing,
            in (0, 1); at least one image goes to each split.
        mode: ``"crop"`` cuts non-overlapping T x T tiles (dropping the edge
            remainder; images smaller than T are first scaled up, keeping the
            aspect ratio); ``"resize"`` resizes each image to one T x T tile.
        seed: seeds the split across sites and the train/test split.

    Returns:
        Sites with ``train``/``test`` TileSets ((N, 3, T, T) images in [0, 1],
        (N, 1, T, T) masks in {0, 1}) and ``info`` = ``{"source": "folder",
        "path", "images": all stems, "test_images": held-out stems}``.

    Raises:
        ConfigError: an option is out of range, or ``n_sites`` disagrees with the
            number of site sub-folders.
        DataError: the folder, a file, or a site cannot be used.
    """
    check_options(tile_size=tile_size, n_sites=n_sites, test_fraction=test_fraction, mode=mode)
    root = Path(root)
    site_pairs = _site_pairs(root, n_sites=n_sites, seed=seed)
    with conversions_summarised(str(root)):
        sites = [
            _build_site(
                name,
                folder,
                pairs,
                tile_size=tile_size,
                test_fraction=test_fraction,
                mode=mode,
                seed=seed,
            )
            for name, folder, pairs in site_pairs
        ]
    warn_if_no_foreground(sites, str(root))
    return sites


def load_tiles(folder: str | Path, *, tile_size: int = 64, mode: str = "crop") -> TileSet:
    """Every tile of one folder's ``images/`` + ``masks/`` pairs, cut as a site's tiles are.

    For tiles that are no site's: the public tiles a learning attack's server holds
    (``[attack.learned-inversion] public_data``).

    Args:
        folder: a directory holding ``images/`` and ``masks/``.
        tile_size: side T of the square tiles, in pixels.
        mode: ``"crop"`` or ``"resize"``, as for :func:`load_folder_sites`.

    Returns:
        The tiles of every pair, in the pairs' stem order.

    Raises:
        ConfigError: an option is out of range.
        DataError: the folder or a file cannot be used.
    """
    check_options(tile_size=tile_size, n_sites=None, test_fraction=0.5, mode=mode)
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"folder {folder} does not exist or is not a directory; check the path")
    with conversions_summarised(str(folder)):
        return _tile_set(find_pairs(folder), tile_size=tile_size, mode=mode)


def _site_pairs(root: Path, *, n_sites: int | None, seed: int) -> list[tuple[str, Path, list[Pair]]]:
    """(site name, site folder, pairs) for either layout."""
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a directory; check the path")
    if (root / "images").is_dir() or (root / "masks").is_dir():
        pairs = find_pairs(root)
        return [
            (f"site-{i}", root, part)
            for i, part in enumerate(_deal(pairs, n_sites or 1, seed=seed, root=root))
        ]
    folders = _site_folders(root)
    if n_sites is not None and n_sites != len(folders):
        names = ", ".join(name for name, _ in folders)
        raise ConfigError(
            f"`n_sites` is {n_sites} but {root} has {len(folders)} site folders ({names}); "
            f"leave `n_sites` unset for per-site folders"
        )
    return [(name, folder, find_pairs(folder)) for name, folder in folders]


def _site_folders(root: Path) -> list[tuple[str, Path]]:
    folders = [
        (path.name, path)
        for path in sorted(root.iterdir())
        if path.is_dir()
        and not path.name.startswith(".")
        and ((path / "images").is_dir() or (path / "masks").is_dir())
    ]
    if not folders:
        raise DataError(
            f"no images in {root}: expected {root}/images + {root}/masks, or one sub-folder "
            f"per site with images/ + masks/ inside"
        )
    return folders


def _deal(pairs: list[Pair], n_sites: int, *, seed: int, root: Path) -> list[list[Pair]]:
    """Seeded shuffle, then contiguous parts whose sizes differ by at most one."""
    # One site is checked by held_out_stems, whose message names the site instead.
    if n_sites > 1 and len(pairs) < 2 * n_sites:
        raise DataError(
            f"{root} has {len(pairs)} image(s), too few for {n_sites} sites with a train and a "
            f"test image each; use n_sites <= {max(1, len(pairs) // 2)} or add images"
        )
    return [[pairs[i] for i in part] for part in deal(pairs, n_sites, seed=seed)]


def _build_site(
    name: str,
    folder: Path,
    pairs: list[Pair],
    *,
    tile_size: int,
    test_fraction: float,
    mode: str,
    seed: int,
) -> Site:
    stems = [image.stem for image, _ in pairs]
    test = held_out_stems(name, str(folder), stems, test_fraction=test_fraction, seed=seed)
    train_pairs = [pair for pair in pairs if pair[0].stem not in test]
    test_pairs = [pair for pair in pairs if pair[0].stem in test]
    info: dict[str, object] = {
        "source": "folder",
        "path": str(folder),
        "images": stems,
        "test_images": sorted(test),
    }
    train, held_out = (_tile_set(p, tile_size=tile_size, mode=mode) for p in (train_pairs, test_pairs))
    if len(train) == 0 or len(held_out) == 0:
        raise DataError(
            f"site {name!r} ({folder}) has {len(train)} training and {len(held_out)} held-out tile(s); "
            "each split needs at least one: add images to it or use fewer sites"
        )
    return Site(name=name, train=train, test=held_out, info=info)


def _tile_set(pairs: list[Pair], *, tile_size: int, mode: str) -> TileSet:
    images, masks = [], []
    for image_path, mask_path in pairs:
        pixels, labels = tile_pair(
            *_load_pair(image_path, mask_path), tile_size=tile_size, mode=mode, name=str(image_path)
        )
        images.append(pixels)
        masks.append(labels)
    return TileSet(torch.cat(images), torch.cat(masks))
