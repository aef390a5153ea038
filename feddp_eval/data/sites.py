"""Turn a :class:`~feddp_eval.config.DataConfig` into the list of sites a run trains on."""

from __future__ import annotations

from pathlib import Path

from feddp_eval.config import DataConfig
from feddp_eval.data.types import Site
from feddp_eval.errors import ConfigError


def build_sites(data: DataConfig, *, seed: int) -> list[Site]:
    """The embedded synthetic sites, or the sites of a dataset folder read as ``data.format``."""
    if data.source == "synthetic":
        from feddp_eval.data.synthetic import synthetic_sites

        return synthetic_sites(
            data.sites,
            data.train_tiles,
            data.test_tiles,
            tile_size=data.tile_size,
            seed=seed,
            difficulty=data.difficulty,
        )
    root = Path(data.source)
    if not root.is_dir():
        raise ConfigError(f"`data.source` must be 'synthetic' or an existing folder, but got {data.source!r}")
    from feddp_eval.data.formats import load_sites

    return load_sites(data, seed=seed)


def planned_sites(data: DataConfig) -> int | None:
    """How many sites a run of ``data`` will have, known without loading a tile (``None``: unknown)."""
    if data.source == "synthetic":
        return int(data.sites)
    from feddp_eval.data.formats import planned_site_count  # file names and metadata only

    return planned_site_count(data)
