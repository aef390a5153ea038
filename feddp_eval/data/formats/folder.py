"""``folder``: ``images/`` + ``masks/`` pairs, one folder split across ``data.sites`` or one sub-folder
per site (:mod:`feddp_eval.data.folder`). The default format of ``--data DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from feddp_eval.data.formats import FORMATS
from feddp_eval.data.formats.base import DatasetFormat, LoadOptions

if TYPE_CHECKING:
    from feddp_eval.data.types import Site


@FORMATS.register("folder")
class ImageFolder(DatasetFormat):
    summary = (
        "images/ + masks/ pairs by file stem: one folder split across `sites`, or one sub-folder per site"
    )
    default = True

    def load(self, root: Path, options: LoadOptions) -> list[Site]:
        from feddp_eval.data.folder import load_folder_sites

        return load_folder_sites(
            root,
            tile_size=options.tile_size,
            n_sites=options.n_sites if _split_layout(root) else None,
            test_fraction=options.test_fraction,
            mode=options.mode,
            seed=options.seed,
        )

    def count_sites(self, root: Path, options: LoadOptions) -> int:
        if _split_layout(root) or (root / "masks").is_dir():
            return int(options.n_sites or 1)
        return sum(
            1
            for p in root.iterdir()
            if p.is_dir()
            and not p.name.startswith(".")
            and ((p / "images").is_dir() or (p / "masks").is_dir())
        )


def _split_layout(root: Path) -> bool:
    return (root / "images").is_dir()
