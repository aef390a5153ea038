"""``consep``: CoNSeP (Graham et al. 2019, HoVer-Net) as its authors ship it.

The download holds ``CoNSeP/Train/Images/*.png`` with ``CoNSeP/Train/Labels/*.mat`` beside them
(and the same under ``Test/``): 1000 x 1000 H&E crops and MATLAB label files whose ``inst_map``
is the nucleus instance map (0 = background; ``type_map`` holds the classes). Foreground is any
nucleus. Every ``Images`` folder below the data folder is read, with its sibling ``Labels``.

CoNSeP comes from one hospital, so its sites are made up: ``site_by = "deal"`` (default) deals the
images into ``data.sites`` sites by a seeded shuffle; ``"split"`` makes the authors' ``Train`` and
``Test`` folders two sites.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from feddp_eval.data.formats import FORMATS
from feddp_eval.data.formats.base import DatasetFormat, LoadOptions, SiteGroup, Source, dealt
from feddp_eval.data.formats.mat import mat_reader
from feddp_eval.errors import DataError


@FORMATS.register("consep")
class CoNSeP(DatasetFormat):
    summary = (
        "CoNSeP Images/*.png + Labels/*.mat (inst_map); sites = images dealt into `sites`, or Train/Test"
    )
    site_by = ("deal", "split")

    def groups(self, root: Path, options: LoadOptions) -> list[SiteGroup]:
        pairs = find_pairs(root)
        if self.chosen_site_by(options) == "split":
            by_split: dict[str, list[Source]] = defaultdict(list)
            for image, label in pairs:
                by_split[image.parent.parent.name.lower()].append(
                    Source(image.stem, mat_reader(image, label))
                )
            return [SiteGroup(name, str(root), tuple(s)) for name, s in sorted(by_split.items())]
        return dealt(root, [Source(image.stem, mat_reader(image, label)) for image, label in pairs], options)


def find_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(``Images/x.png``, ``Labels/x.mat``) pairs of every ``Images`` folder under ``root``."""
    folders = sorted(p for p in [root, *root.rglob("*")] if p.is_dir() and p.name.lower() == "images")
    if not folders:
        raise DataError(
            f"no Images folder under {root}: expected 'CoNSeP/Train/Images/*.png' with "
            f"'CoNSeP/Train/Labels/*.mat' as in the download; unzip it there"
        )
    pairs: list[tuple[Path, Path]] = []
    seen: dict[str, Path] = {}
    for folder in folders:
        for image in sorted(folder.glob("*.png")):
            if image.name.startswith("."):
                continue
            if image.stem in seen:
                raise DataError(
                    f"{seen[image.stem]} and {image} share the name {image.stem!r}; keep one of them"
                )
            seen[image.stem] = image
            label = _label_of(image)
            pairs.append((image, label))
    if not pairs:
        raise DataError(f"no .png image in {', '.join(map(str, folders))}; unzip the CoNSeP images there")
    return pairs


def _label_of(image: Path) -> Path:
    for name in ("Labels", "labels"):
        label = image.parent.parent / name / f"{image.stem}.mat"
        if label.is_file():
            return label
    raise DataError(
        f"image {image} has no label file {image.parent.parent / 'Labels' / (image.stem + '.mat')}; "
        f"add the .mat from the download or remove the image"
    )
