"""The part of every dataset format that is not about its files: what a format provides, and how its
source images become sites of tiles.

A format lists its *source images* grouped into sites (:meth:`DatasetFormat.groups`) from file names
and small metadata only; :func:`load_groups` then splits each site by source image (all crops of
one image in one split), reads and tiles the pixels, and refuses what it cannot use. Counting sites
before training (:meth:`DatasetFormat.count_sites`) uses the same groups, so it always agrees with
what is loaded.

Nothing here imports torch at module level: config validation and ``--help`` import the formats.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from feddp_eval.errors import DataError

if TYPE_CHECKING:
    from feddp_eval.data.types import Site

Reader = Callable[[], tuple[np.ndarray, np.ndarray]]
"""Reads one source image: ((H, W, 3) float32 in [0, 1], (H, W) bool foreground)."""


@dataclass(frozen=True)
class Source:
    """One annotated source image of a dataset, not yet read.

    Attributes:
        stem: Its name, unique within the dataset (a file stem, ``fold1-00012`` for PanNuke).
        read: Reads its pixels and its foreground mask; raises DataError naming the file.
    """

    stem: str
    read: Reader = field(compare=False, repr=False)


@dataclass(frozen=True)
class SiteGroup:
    """The source images of one site, by name; ``where`` says where they live (for messages)."""

    name: str
    where: str
    sources: tuple[Source, ...]


@dataclass(frozen=True)
class LoadOptions:
    """How a format's source images become tiles (the ``[data]`` settings a loader reads)."""

    tile_size: int = 64
    test_fraction: float = 0.25
    mode: str = "crop"
    seed: int = 0
    site_by: str | None = None
    n_sites: int | None = None
    level: int = 0


class DatasetFormat:
    """A dataset as its authors ship it. Subclass, register in :data:`~feddp_eval.data.formats.FORMATS`.

    Class attributes:
        name: The registered name (set by the registry).
        summary: One line for ``feddp-eval list formats``.
        site_by: The ways this format can split into sites; the first is the default. Empty: the
            format takes no ``site_by`` (its layout says the sites).
        default: Whether this is the format of a data folder given without ``format``.
        reads_levels: Whether ``data.level`` (a pyramid level) means anything to this format.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    site_by: ClassVar[tuple[str, ...]] = ()
    default: ClassVar[bool] = False
    reads_levels: ClassVar[bool] = False

    def groups(self, root: Path, options: LoadOptions) -> list[SiteGroup]:
        """The sites' source images, from file names and metadata only (no pixels are read)."""
        raise NotImplementedError

    def load(self, root: Path, options: LoadOptions) -> list[Site]:
        """Read, split and tile every site (see :func:`load_groups`)."""
        return load_groups(self.name, root, self.groups(root, options), options)

    def count_sites(self, root: Path, options: LoadOptions) -> int:
        """How many sites :meth:`load` returns, without reading a pixel."""
        return len(usable_groups(self.groups(root, options), warn=False))

    def chosen_site_by(self, options: LoadOptions) -> str | None:
        """``options.site_by``, or this format's default."""
        return options.site_by or (self.site_by[0] if self.site_by else None)


def usable_groups(groups: Sequence[SiteGroup], *, warn: bool) -> list[SiteGroup]:
    """The groups with at least 2 source images (one to train on, one to hold out).

    A dataset's own metadata can put a single image at a site (MoNuSeg has TCGA tissue-source sites
    with one slide); such a site is left out with a warning rather than refusing the whole dataset,
    which the user cannot change. No usable site at all is an error.
    """
    kept = [g for g in groups if len(g.sources) >= 2]
    left = [g for g in groups if len(g.sources) < 2]
    if not kept:
        where = groups[0].where if groups else "the data folder"
        raise DataError(
            f"no site under {where} has the 2 source images a train/test split needs "
            f"({len(groups)} site(s), each with one image or none); add images or pick another site_by"
        )
    if left and warn:
        names = ", ".join(f"{g.name} ({len(g.sources)} image)" for g in left)
        warnings.warn(
            f"left out {len(left)} site(s) with a single source image, which cannot be split into "
            f"train and test: {names}",
            UserWarning,
            stacklevel=3,
        )
    return kept


def load_groups(name: str, root: Path, groups: Sequence[SiteGroup], options: LoadOptions) -> list[Site]:
    """Sites of tiles from grouped source images: split by source image, read, tile.

    Args:
        name: The format's name, recorded in each site's ``info["source"]``.
        root: The dataset folder (for messages).
        groups: The sites' source images.
        options: Tile size, tiling mode, held-out share and seed.

    Returns:
        Sites in the groups' order; ``info`` = ``{"source", "path", "images", "test_images"}``.

    Raises:
        DataError: a file cannot be used (the message names it), or no site can be split.
    """
    from feddp_eval.data.tiling import check_options, conversions_summarised, warn_if_no_foreground

    check_options(
        tile_size=options.tile_size, n_sites=None, test_fraction=options.test_fraction, mode=options.mode
    )
    with conversions_summarised(str(root)):
        sites = [_load_site(name, group, options) for group in usable_groups(groups, warn=True)]
    warn_if_no_foreground(sites, str(root))
    return sites


def _load_site(format_name: str, group: SiteGroup, options: LoadOptions) -> Site:
    import torch

    from feddp_eval.data.tiling import held_out_stems, tile_pair
    from feddp_eval.data.types import Site, TileSet

    stems = [source.stem for source in group.sources]
    test = held_out_stems(
        group.name, group.where, stems, test_fraction=options.test_fraction, seed=options.seed
    )
    splits: dict[bool, tuple[list[torch.Tensor], list[torch.Tensor]]] = {False: ([], []), True: ([], [])}
    for source in group.sources:
        pixels, labels = tile_pair(
            *source.read(),
            tile_size=options.tile_size,
            mode=options.mode,
            name=f"{group.where}/{source.stem}",
        )
        images, masks = splits[source.stem in test]
        images.append(pixels)
        masks.append(labels)
    train, held = (TileSet(torch.cat(splits[k][0]), torch.cat(splits[k][1])) for k in (False, True))
    info: dict[str, object] = {
        "source": format_name,
        "path": group.where,
        "images": stems,
        "test_images": sorted(test),
    }
    return Site(name=group.name, train=train, test=held, info=info)


def dealt(root: Path, sources: list[Source], options: LoadOptions) -> list[SiteGroup]:
    """``sources`` dealt into ``options.n_sites`` sites (``site-0``, …) by a shuffle seeded with the
    data seed; too few images for that many sites is an error with the largest count that works."""
    from feddp_eval.data.tiling import deal

    n_sites = options.n_sites or 1
    if n_sites > 1 and len(sources) < 2 * n_sites:
        raise DataError(
            f"{root} has {len(sources)} image(s), too few for {n_sites} sites with a train and a test "
            f"image each; use sites <= {max(1, len(sources) // 2)} or add images"
        )
    parts = deal(sources, n_sites, seed=options.seed)
    return [
        SiteGroup(f"site-{i}", str(root), tuple(sources[j] for j in part)) for i, part in enumerate(parts)
    ]


# --------------------------------------------------------------------------- shared refusals


def one_line(error: BaseException) -> str:
    """An exception's message on one line (library messages can span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def check_foreground(
    mask: np.ndarray, *, image_shape: tuple[int, ...], mask_name: str, image_name: str
) -> None:
    """Refuse a label map that is not 2-D or not the image's height and width."""
    if mask.ndim != 2:
        raise DataError(
            f"label map in {mask_name} has shape {mask.shape}; it must be 2-D (H, W) like the image "
            f"{image_name}: replace the file with the authors' original"
        )
    if mask.shape != tuple(image_shape[:2]):
        raise DataError(
            f"label map in {mask_name} is {mask.shape[1]}x{mask.shape[0]} (WxH) but image {image_name} "
            f"is {image_shape[1]}x{image_shape[0]}; the pair does not belong together: restore both files"
        )
