"""Turn a :class:`~feddp_eval.config.DataConfig` into the list of sites a run trains on."""

from __future__ import annotations

from pathlib import Path

from feddp_eval.config import DataConfig
from feddp_eval.data.types import Site
from feddp_eval.errors import ConfigError


def build_sites(data: DataConfig, *, seed: int) -> list[Site]:
    """The embedded synthetic sites, or the sites of a real image folder."""
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
    from feddp_eval.data.folder import load_folder_sites

    has_split_layout = (root / "images").is_dir()
    return load_folder_sites(
        root,
        tile_size=data.tile_size,
        n_sites=data.sites if has_split_layout else None,
        test_fraction=data.test_fraction,
        mode=data.tile_mode,
        seed=seed,
    )
