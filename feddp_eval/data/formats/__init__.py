"""Dataset formats: each turns a dataset as its authors ship it into sites of tiles.

One module per format registers one :class:`~feddp_eval.data.formats.base.DatasetFormat` here; the
split by source image, the tiling and the refusals are shared (:mod:`~feddp_eval.data.formats.base`,
:mod:`feddp_eval.data.tiling`). ``feddp-eval list formats`` prints the registry.

A format module imports numpy at most at module level (config validation imports this package).
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feddp_eval.data.formats.base import DatasetFormat, LoadOptions, SiteGroup, Source
from feddp_eval.errors import DataError
from feddp_eval.registry import Registry

if TYPE_CHECKING:
    from feddp_eval.data.types import Site

FORMATS: Registry[DatasetFormat] = Registry("data format")

_SHARED = frozenset({"base", "mat"})  # modules of this package that are not formats
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in _SHARED:
        importlib.import_module(f"{__name__}.{_module}")

__all__ = [
    "FORMATS",
    "DatasetFormat",
    "LoadOptions",
    "SiteGroup",
    "Source",
    "default_format",
    "format_problems",
    "get_format",
    "load_sites",
    "planned_site_count",
]


def default_format() -> str:
    """The format of a data folder given without ``format`` (the one registered as the default)."""
    (name,) = [n for n in FORMATS.names() if FORMATS.get(n).default]
    return name


def get_format(name: str | None) -> DatasetFormat:
    """The format registered as ``name`` (``None``: the default); unknown names list the known ones."""
    return FORMATS.create(name or default_format())


def format_problems(source: str, name: str | None, site_by: str | None, level: int = 0) -> list[str]:
    """What is wrong with ``data.format``, ``data.site_by`` and ``data.level`` (every problem; nothing
    is read)."""
    if name is None and site_by is None and level == 0:
        return []
    if source == "synthetic":
        return [
            "`data.format`, `data.site_by` and `data.level` read a dataset folder, but `data.source` is "
            "'synthetic'; give the folder as `data.source` (--data DIR) or drop them"
        ]
    if name is not None and name not in FORMATS:
        return [f"`data.format` must be one of {', '.join(FORMATS.names())}, but got {name!r}"]
    fmt = get_format(name)
    if level != 0 and not fmt.reads_levels:
        readers = ", ".join(n for n in FORMATS.names() if FORMATS.get(n).reads_levels)
        return [
            f"`data.level` ({level}) is a pyramid level, which format {fmt.name!r} does not read; "
            f"drop it or use a format that does ({readers})"
        ]
    if site_by is None or site_by in fmt.site_by:
        return []
    if not fmt.site_by:
        return [
            f"`data.site_by` does not apply to format {fmt.name!r} (its layout says the sites), but got "
            f"{site_by!r}; drop it"
        ]
    return [
        f"`data.site_by` for format {fmt.name!r} must be one of {', '.join(fmt.site_by)}, but got {site_by!r}"
    ]


def options_of(data: Any, *, seed: int) -> LoadOptions:
    """The loader options of a :class:`~feddp_eval.config.DataConfig`."""
    return LoadOptions(
        tile_size=data.tile_size,
        test_fraction=data.test_fraction,
        mode=data.tile_mode,
        seed=seed,
        site_by=data.site_by,
        n_sites=data.sites,
        level=data.level,
    )


def load_sites(data: Any, *, seed: int) -> list[Site]:
    """The sites of the dataset folder ``data.source`` read as ``data.format``."""
    root = Path(data.source)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a directory; check the path")
    return get_format(data.format).load(root, options_of(data, seed=seed))


def planned_site_count(data: Any) -> int | None:
    """How many sites ``data`` yields, from file names and metadata only (``None``: cannot tell yet;
    loading will say why)."""
    root = Path(data.source)
    if not root.is_dir() or format_problems(data.source, data.format, data.site_by, data.level):
        return None
    try:
        return get_format(data.format).count_sites(root, options_of(data, seed=0))
    except (DataError, OSError):
        return None
