"""``lizard``: Lizard (Graham et al. 2021) as its authors ship it.

The download holds ``lizard_images1/Lizard_Images1/*.png``, ``lizard_images2/Lizard_Images2/*.png``
and ``lizard_labels/Lizard_Labels/`` with ``Labels/<name>.mat`` (``inst_map``: nucleus instance
map, 0 = background; ``class``, ``id``, ``bbox``, ``centroid`` per nucleus) and ``info.csv``
(``Filename``, ``Source``, ``Split``). Foreground is any nucleus.

Sites: ``site_by = "source"`` (default): the dataset each image was drawn from (CoNSeP, CRAG,
DigestPath, GlaS, PanNuke): the real multi-centre split; ``"split"``: the authors' folds 1–3.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from feddp_eval.data.formats import FORMATS
from feddp_eval.data.formats.base import DatasetFormat, LoadOptions, SiteGroup, Source, one_line
from feddp_eval.data.formats.mat import mat_reader
from feddp_eval.errors import DataError

COLUMNS = ("Filename", "Source", "Split")
MAX_INFO_BYTES = 16 * 2**20


@FORMATS.register("lizard")
class Lizard(DatasetFormat):
    summary = (
        "Lizard Lizard_Images*/*.png + Lizard_Labels/Labels/*.mat + info.csv; sites = source dataset or fold"
    )
    site_by = ("source", "split")

    def groups(self, root: Path, options: LoadOptions) -> list[SiteGroup]:
        info = _info_file(root)
        labels = info.parent / "Labels"
        images = _images(root)
        column = "Source" if self.chosen_site_by(options) == "source" else "Split"
        grouped: dict[str, list[Source]] = defaultdict(list)
        for row in read_info(info):
            name = row["Filename"]
            if name not in images:
                raise DataError(
                    f"{info} lists {name!r} but no {name}.png is in a Lizard_Images folder under {root}; "
                    f"unzip both image archives (lizard_images1 and lizard_images2)"
                )
            label = labels / f"{name}.mat"
            if not label.is_file():
                raise DataError(f"image {images[name]} has no label file {label}; unzip lizard_labels whole")
            site = row[column].strip().lower() if column == "Source" else f"split-{row[column].strip()}"
            grouped[site].append(Source(name, mat_reader(images[name], label)))
        return [SiteGroup(name, str(root), tuple(s)) for name, s in sorted(grouped.items())]


def _info_file(root: Path) -> Path:
    found = sorted(p for p in root.rglob("info.csv") if p.is_file())
    if len(found) != 1:
        what = "no info.csv" if not found else f"{len(found)} info.csv files ({', '.join(map(str, found))})"
        raise DataError(
            f"{what} under {root}: expected one 'lizard_labels/Lizard_Labels/info.csv' beside its Labels "
            f"folder, as in the download"
        )
    return found[0]


def _images(root: Path) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for folder in sorted(
        p for p in root.rglob("*") if p.is_dir() and p.name.lower().startswith("lizard_images")
    ):
        for image in sorted(folder.glob("*.png")):
            if image.name.startswith("."):  # macOS resource forks in the zips' __MACOSX copies
                continue
            if image.stem in images and images[image.stem].parent != folder:
                raise DataError(f"{images[image.stem]} and {image} share the name {image.stem!r}; keep one")
            images[image.stem] = image
    return images


def read_info(info: Path) -> list[dict[str, str]]:
    """The rows of ``info.csv``; missing columns or an empty Filename are refused."""
    if info.stat().st_size > MAX_INFO_BYTES:
        raise DataError(f"{info} is over {MAX_INFO_BYTES} bytes; not Lizard's info.csv")
    try:
        with info.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {info} ({one_line(exc)}); use the authors' info.csv") from None
    if missing:
        raise DataError(
            f"{info} has no column {', '.join(missing)} (columns: {', '.join(reader.fieldnames or [])}); "
            f"use the authors' info.csv"
        )
    for number, row in enumerate(rows, start=2):
        if not all((row.get(c) or "").strip() for c in COLUMNS):
            raise DataError(
                f"{info} line {number} leaves {'/'.join(COLUMNS)} empty; use the authors' info.csv"
            )
    return rows
