"""Dataset formats on format-faithful fixtures: each loader's sites, its split by source image, its
foreground fraction (exact, from the drawn nuclei), and every malformed file refused in one line."""

from __future__ import annotations

import dataclasses
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from feddp_eval.config import DataConfig, ExperimentConfig, config_hash, validate
from feddp_eval.data.formats import FORMATS, LoadOptions, get_format
from feddp_eval.data.sites import planned_sites
from feddp_eval.data.types import Site
from feddp_eval.errors import ConfigError, DataError
from tests.data.format_fixtures import SIDE, WRITERS

TILE = 16  # 32 px fixture images: 4 crops each
PIXELS = SIDE * SIDE

# (format, site_by) → {site: (source images, foreground pixels of the site)}, worked out by hand from
# the fixtures' drawn nuclei (format_fixtures.py), never from a loader.
EXPECTED: dict[tuple[str, str], dict[str, tuple[list[str], int]]] = {
    # PanNuke tile g: a (4 + 2 (g % 3)) square + a 2 x 2 nucleus; fold 1 holds g = 0..3, fold 2 g = 4..6.
    ("pannuke", "fold"): {
        "fold1": ([f"fold1-{i:05d}" for i in range(4)], (16 + 4) + (36 + 4) + (64 + 4) + (16 + 4)),
        "fold2": ([f"fold2-{i:05d}" for i in range(3)], (36 + 4) + (64 + 4) + (16 + 4)),
    },
    ("pannuke", "tissue"): {
        "Breast": (["fold1-00000", "fold1-00002", "fold2-00000"], 20 + 68 + 40),
        "Colon": (["fold1-00001", "fold1-00003", "fold2-00001", "fold2-00002"], 40 + 20 + 68 + 20),
    },
    # MoNuSeg image k: 8 x 6 + (2 + k) x 4 (+ a 4 x 4 clipped half-outside polygon on image 0).
    ("monuseg", "tss"): {
        "tss-A7": (["TCGA-A7-A13E-01Z-00-DX1", "TCGA-A7-A13F-01Z-00-DX1"], (48 + 8 + 16) + (48 + 12)),
        "tss-G9": (["TCGA-G9-6336-01Z-00-DX1", "TCGA-G9-6348-01Z-00-DX1"], (48 + 20) + (48 + 24)),
    },
    ("monuseg", "organ"): {
        "breast": (
            ["TCGA-A7-A13E-01Z-00-DX1", "TCGA-A7-A13F-01Z-00-DX1", "TCGA-AR-A1AK-01Z-00-DX1"],
            72 + 60 + (48 + 16),
        ),
        "prostate": (["TCGA-G9-6336-01Z-00-DX1", "TCGA-G9-6348-01Z-00-DX1"], 68 + 72),
    },
    # CoNSeP / Lizard image k: a (3 + k) square + a 2 x 2 nucleus.
    ("consep", "split"): {
        "test": (["test_1", "test_2"], (49 + 4) + (64 + 4)),
        "train": (["train_1", "train_2", "train_3", "train_4"], (9 + 4) + (16 + 4) + (25 + 4) + (36 + 4)),
    },
    ("lizard", "source"): {
        "consep": (["consep_1", "consep_2"], (9 + 4) + (16 + 4)),
        "glas": (["glas_1", "glas_2"], (36 + 4) + (49 + 4)),
    },
    ("lizard", "split"): {
        "split-1": (["consep_1", "glas_1"], 13 + 40),
        "split-2": (["consep_2", "crag_1"], 20 + 29),
    },
}
LEFT_OUT = {("monuseg", "tss"): 2, ("monuseg", "organ"): 1, ("lizard", "source"): 1, ("lizard", "split"): 1}


def load(fmt: str, root: Path, **options: object) -> list[Site]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # single-image sites left out: asserted apart
        return get_format(fmt).load(root, LoadOptions(tile_size=TILE, **options))  # type: ignore[arg-type]


def stems(site: Site, key: str = "images") -> list[str]:
    value = site.info[key]
    assert isinstance(value, list)
    return value


def reds(images: object) -> set[int]:
    """The red value of each tile: the fixtures give each source image its own red."""
    import torch

    assert isinstance(images, torch.Tensor)
    return {round(float(tile[0, 0, 0]) * 255) for tile in images}


@pytest.mark.parametrize(("fmt", "site_by"), sorted(EXPECTED))
def test_sites_split_by_source_image_with_the_exact_foreground(
    tmp_path: Path, fmt: str, site_by: str
) -> None:
    WRITERS[fmt](tmp_path)
    sites = load(fmt, tmp_path, site_by=site_by, seed=5)
    expected = EXPECTED[(fmt, site_by)]

    assert [s.name for s in sites] == sorted(expected)
    for site in sites:
        images, foreground = expected[site.name]
        assert sorted(stems(site)) == sorted(images)
        held = stems(site, "test_images")
        # int(n * 0.25 + 0.5) held out, at least one: 1 of 2..4 images.
        assert len(held) == 1 and set(held) < set(images)
        # 32 px images, 16 px crops: 4 tiles per image, all in the split of their image.
        assert (len(site.train), len(site.test)) == (4 * (len(images) - 1), 4)
        masks = [site.train.masks, site.test.masks]
        assert set(np.unique(np.concatenate([m.numpy().ravel() for m in masks]))) <= {0.0, 1.0}
        got = Fraction(int(sum(m.sum().item() for m in masks)), len(images) * PIXELS)
        assert got == Fraction(foreground, len(images) * PIXELS), site.name
        assert site.info["source"] == fmt
        # Every fixture image has its own colour: held-out crops share none with training crops.
        assert len(reds(site.train.images)) == len(images) - 1 and len(reds(site.test.images)) == 1
        assert reds(site.train.images).isdisjoint(reds(site.test.images))


@pytest.mark.parametrize(("fmt", "site_by"), sorted(EXPECTED))
def test_planned_sites_count_what_is_loaded_without_reading_pixels(
    tmp_path: Path, fmt: str, site_by: str
) -> None:
    WRITERS[fmt](tmp_path)
    data = DataConfig(source=str(tmp_path), format=fmt, site_by=site_by, tile_size=TILE)
    assert planned_sites(data) == len(EXPECTED[(fmt, site_by)])


@pytest.mark.parametrize(("fmt", "site_by"), sorted(LEFT_OUT))
def test_single_image_sites_are_left_out_by_name(tmp_path: Path, fmt: str, site_by: str) -> None:
    WRITERS[fmt](tmp_path)
    with pytest.warns(UserWarning, match=rf"left out {LEFT_OUT[(fmt, site_by)]} site\(s\) with a single"):
        get_format(fmt).load(tmp_path, LoadOptions(tile_size=TILE, site_by=site_by))


def test_each_format_defaults_to_its_first_site_by(tmp_path: Path) -> None:
    WRITERS["pannuke"](tmp_path)
    assert [s.name for s in load("pannuke", tmp_path)] == ["fold1", "fold2"]
    assert {name: FORMATS.get(name).site_by[:1] for name in FORMATS.names()} == {
        "consep": ("deal",),
        "folder": (),
        "lizard": ("source",),
        "monuseg": ("tss",),
        "pannuke": ("fold",),
        "wsi": (),
    }


def test_consep_deals_images_into_the_configured_sites_by_seed(tmp_path: Path) -> None:
    WRITERS["consep"](tmp_path)
    sites = load("consep", tmp_path, n_sites=3, seed=1)
    again = load("consep", tmp_path, n_sites=3, seed=1)
    other = load("consep", tmp_path, n_sites=3, seed=2)
    assert [s.name for s in sites] == ["site-0", "site-1", "site-2"]
    assert [len(stems(s)) for s in sites] == [2, 2, 2]
    assert sorted(x for s in sites for x in stems(s)) == sorted(
        ["train_1", "train_2", "train_3", "train_4", "test_1", "test_2"]
    )
    assert [s.info for s in sites] == [s.info for s in again]
    assert [stems(s) for s in sites] != [stems(s) for s in other]
    with pytest.raises(DataError, match=r"6 image\(s\), too few for 4 sites.*sites <= 3"):
        load("consep", tmp_path, n_sites=4)


def test_resize_mode_makes_one_tile_per_source_image(tmp_path: Path) -> None:
    WRITERS["monuseg"](tmp_path)
    sites = load("monuseg", tmp_path, mode="resize")
    assert [(len(s.train), len(s.test)) for s in sites] == [(1, 1), (1, 1)]


def test_pannuke_values_are_read_as_0_to_255(tmp_path: Path) -> None:
    WRITERS["pannuke"](tmp_path)
    fold1 = load("pannuke", tmp_path)[0]
    # Tile g is red 10 + 30 g, green 100, blue 100 + 3x + 2y (x, y in 0..31) over 255.
    assert reds(fold1.train.images) | reds(fold1.test.images) == {10, 40, 70, 100}
    every = np.concatenate([fold1.train.images.numpy(), fold1.test.images.numpy()])
    assert (every[:, 1] * 255).round().min() == (every[:, 1] * 255).round().max() == 100
    assert (every[:, 2] * 255).round().min() == 100
    assert float(every[:, 2].max()) * 255 == pytest.approx(255)


# --------------------------------------------------------------------------- config


def test_unset_format_keeps_every_published_hash() -> None:
    """Hashes of the default and of a folder config, computed before `format`/`site_by` existed."""
    base = ExperimentConfig()
    folder = validate(
        dataclasses.replace(base, data=DataConfig(source="/data/tiles", sites=2, tile_mode="resize"))
    )
    assert config_hash(base) == "f3cbd45b0d400aae6657c902a5fb5ec41110d62b07ca74211c167ff21a099a83"
    assert config_hash(folder) == "f40b360006154d58b1fa91ef735fd3b1825757f2686d34113d56712ac784658c"
    with_format = dataclasses.replace(folder, data=dataclasses.replace(folder.data, format="pannuke"))
    assert config_hash(with_format) != config_hash(folder)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (DataConfig(format="pannuke"), "`data.source` is 'synthetic'"),
        (DataConfig(source="/d", format="pannukee"), "one of consep, folder, lizard, monuseg, pannuke"),
        (DataConfig(source="/d", format="monuseg", site_by="fold"), "must be one of tss, organ"),
        (DataConfig(source="/d", site_by="fold"), "does not apply to format 'folder'"),
    ],
)
def test_bad_format_settings_are_config_errors(data: DataConfig, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        validate(ExperimentConfig(data=data))


# --------------------------------------------------------------------------- refusals (library)


def test_pannuke_object_arrays_are_refused_never_unpickled(tmp_path: Path) -> None:
    WRITERS["pannuke"](tmp_path)
    types = tmp_path / "Fold 1" / "images" / "fold1" / "types.npy"
    np.save(types, np.array(["Breast", None, "Breast", "Colon"], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"cannot read .*types\.npy .*allow_pickle=False") as info:
        load("pannuke", tmp_path)
    assert "\n" not in str(info.value)


def test_monuseg_doctype_is_refused_before_parsing(tmp_path: Path) -> None:
    WRITERS["monuseg"](tmp_path)
    xml = next(tmp_path.rglob("TCGA-A7-A13E-01Z-00-DX1.xml"))
    text = xml.read_text().replace("<Annotations", '<!DOCTYPE a [<!ENTITY e "x">]>\n<Annotations', 1)
    xml.write_text(text)
    with pytest.raises(DataError, match="declares a DOCTYPE or entities"):
        load("monuseg", tmp_path)


def test_monuseg_organ_needs_a_name_in_the_inventory(tmp_path: Path) -> None:
    WRITERS["monuseg"](tmp_path)
    for path in tmp_path.rglob("TCGA-18-5592-01Z-00-DX1.*"):
        path.rename(path.with_name("TCGA-ZZ-0000-01Z-00-DX1" + path.suffix))
    with pytest.raises(
        DataError, match=r"TCGA-ZZ-0000-01Z-00-DX1\.tif is not in the MoNuSeg organ inventory"
    ):
        load("monuseg", tmp_path, site_by="organ")
    assert [s.name for s in load("monuseg", tmp_path, site_by="tss")] == ["tss-A7", "tss-G9"]


# --------------------------------------------------------------------------- whole-slide regions


@pytest.mark.parametrize(("level", "side"), [(0, 64), (1, 32), (2, 16)])
def test_wsi_reads_the_pyramid_level_and_samples_the_mask_to_it(
    tmp_path: Path, level: int, side: int
) -> None:
    from tests.data.format_fixtures import write_wsi

    write_wsi(tmp_path)
    sites = load("wsi", tmp_path, level=level)
    assert [s.name for s in sites] == ["lab-a", "lab-b"]
    crops = (side // TILE) ** 2
    for site, regions in zip(sites, ([0, 1], [2, 3]), strict=True):
        assert stems(site) == [f"region-{k}" for k in regions]
        assert (len(site.train), len(site.test)) == (crops, crops)
        # Region k's level-0 mask: rows 8..23 x cols 8..(15 + 4k); level L keeps every 2**L-th pixel.
        step = 2**level
        want = sum((16 // step) * ((8 + 4 * k) // step) for k in regions)
        got = int(site.train.masks.sum() + site.test.masks.sum())
        assert Fraction(got, 2 * side * side) == Fraction(want, 2 * side * side)
        # Green is 60 + x at level 0: level L's column j is x = j * 2**L.
        every = np.concatenate([site.train.images.numpy(), site.test.images.numpy()])
        assert sorted({round(float(v) * 255) for v in every[:, 1, 0, :].ravel()})[:2] == [60, 60 + step]


def test_wsi_refuses_a_level_the_region_lacks_and_a_missing_mask(tmp_path: Path) -> None:
    from tests.data.format_fixtures import write_wsi

    write_wsi(tmp_path)
    with pytest.raises(
        DataError, match=r"region-0\.tif has 3 pyramid level\(s\) \(0\.\.2\), so `data\.level` = 3"
    ):
        load("wsi", tmp_path, level=3)
    (tmp_path / "lab-b" / "masks" / "region-3.png").unlink()
    with pytest.raises(DataError, match=r"region-3\.tif has no mask"):
        load("wsi", tmp_path)


def test_level_is_refused_for_a_format_without_levels() -> None:
    with pytest.raises(ConfigError, match=r"`data.level` \(1\) is a pyramid level, which format 'monuseg'"):
        validate(ExperimentConfig(data=DataConfig(source="/d", format="monuseg", level=1)))
