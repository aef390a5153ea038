"""The formats through the CLI: `attack` and `train` end to end on each fixture, `sweep` and `check`
configs with a format, and every malformed file refused in one line with exit 2 before training."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat
from typer.testing import CliRunner

from feddp_eval.cli import app
from tests.data.format_fixtures import SIDE, WRITERS, aperio_xml, rectangle, write_v73_mat
from tests.hostile.helpers import assert_refused, invoke

runner = CliRunner()
# Training tiles per site (4 crops of each training image; one image per site held out).
TRAIN_TILES = {
    "pannuke": {"fold1": 12, "fold2": 8},
    "monuseg": {"tss-A7": 4, "tss-G9": 4},
    "consep": {"site-0": 8, "site-1": 8},  # tiny.toml: 2 sites of 3 images
    "lizard": {"consep": 4, "glas": 4},
    "wsi": {"lab-a": 16, "lab-b": 16},  # 64 px regions at level 0
}
SITES = {fmt: set(tiles) for fmt, tiles in TRAIN_TILES.items()}


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_attack_runs_end_to_end_on_each_format(tmp_path: Path, tiny_toml: Path, fmt: str) -> None:
    """The acceptance command, `feddp-eval attack --data DIR --data-format F --rounds 1`, on tiny
    settings (as the folder test in tests/test_cli_attack.py: imprint, no reference arm)."""
    WRITERS[fmt](tmp_path / "data")
    args = ["attack", "--config", str(tiny_toml), "--data", str(tmp_path / "data"), "--data-format", fmt]
    args += ["--rounds", "1", "--attack", "imprint", "--defense", "none", "--no-reference"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "runs"), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    site, tiles = report["scenario"]["site"], report["scenario"]["tiles"]
    assert tiles == TRAIN_TILES[fmt][site] == min(TRAIN_TILES[fmt].values())  # the smallest site
    (row,) = report["rows"]
    assert 0 < row["tiles_read"] <= tiles


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_train_runs_end_to_end_on_each_format(tmp_path: Path, tiny_toml: Path, fmt: str) -> None:
    WRITERS[fmt](tmp_path / "data")
    out = tmp_path / "run"
    args = ["train", "--config", str(tiny_toml), "--data", str(tmp_path / "data"), "--data-format", fmt]
    result = runner.invoke(app, [*args, "--rounds", "1", "--out", str(out), "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    resolved = (out / "config.toml").read_text()
    assert f'format = "{fmt}"' in resolved
    sites = {line.split(",")[1] for line in (out / "metrics.csv").read_text().splitlines()[1:]} - {"pooled"}
    assert sites == SITES[fmt]


def test_site_by_flag_reaches_the_loader(tmp_path: Path, tiny_toml: Path) -> None:
    WRITERS["pannuke"](tmp_path / "data")
    out = tmp_path / "run"
    args = ["train", "-c", str(tiny_toml), "--data", str(tmp_path / "data"), "--data-format", "pannuke"]
    result = runner.invoke(app, [*args, "--site-by", "tissue", "--rounds", "1", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    sites = {line.split(",")[1] for line in (out / "metrics.csv").read_text().splitlines()[1:]} - {"pooled"}
    assert sites == {"Breast", "Colon"}


def test_sweep_and_check_configs_take_a_format(tmp_path: Path) -> None:
    from feddp_eval.config import load_config
    from feddp_eval.sweep import load_sweep_config

    WRITERS["monuseg"](tmp_path / "data")
    toml = tmp_path / "exp.toml"
    toml.write_text(
        f'[data]\nsource = "{tmp_path / "data"}"\nformat = "monuseg"\nsite_by = "organ"\n\n'
        '[defense]\nname = "dp-sgd"\nnoise = 1.0\n\n[sweep]\nnoises = [0.1]\n'
    )
    base, spec = load_sweep_config(toml)
    assert (base.data.format, base.data.site_by, spec.noises) == ("monuseg", "organ", (0.1,))
    scenario = tmp_path / "scenario.toml"  # what `check --write-baseline --scenario` reads
    scenario.write_text(toml.read_text().split("[sweep]")[0])
    assert load_config(scenario).data.format == "monuseg"
    bad = tmp_path / "bad.toml"
    bad.write_text(scenario.read_text().replace('"organ"', '"fold"'))
    outcome = invoke(["sweep", "--config", bad, "--out", tmp_path / "sweep", "-q"])
    assert_refused(outcome, "`data.site_by` for format 'monuseg' must be one of tss, organ")
    assert not (tmp_path / "sweep").exists()


def test_sweep_refuses_a_target_beyond_the_formats_sites_before_training(tmp_path: Path) -> None:
    WRITERS["lizard"](tmp_path / "data")
    flags = ["--data", tmp_path / "data", "--data-format", "lizard", "--targets", "2", "--noise", "0.1"]
    outcome = invoke(["sweep", *flags, "--out", tmp_path / "sweep", "-q"])
    assert_refused(outcome, "names a site beyond the 2 sites")


# --------------------------------------------------------------------------- malformed files


def _missing_annotation(root: Path) -> str:
    next(root.rglob("TCGA-G9-6336-01Z-00-DX1.xml")).unlink()
    return "TCGA-G9-6336-01Z-00-DX1.tif has no annotation"


def _polygon_outside(root: Path) -> str:
    xml = next(root.rglob("TCGA-A7-A13F-01Z-00-DX1.xml"))
    xml.write_text(aperio_xml([rectangle(3.5, 3.5, 9.5, 9.5), rectangle(40.5, 3.5, 48.5, 9.5)]))
    return "TCGA-A7-A13F-01Z-00-DX1.xml: region 2 lies wholly outside the 32x32 image"


def _bad_vertex(root: Path) -> str:
    xml = next(root.rglob("TCGA-A7-A13F-01Z-00-DX1.xml"))
    xml.write_text(xml.read_text().replace('X="3.5"', 'X="three"', 1))
    return "TCGA-A7-A13F-01Z-00-DX1.xml: region 1 has a vertex without numeric X and Y"


def _pannuke_mask_shape(root: Path) -> str:
    masks = root / "Fold 2" / "masks" / "fold2" / "masks.npy"
    np.save(masks, np.zeros((3, SIDE, SIDE, 5)))
    return "masks.npy has shape (3, 32, 32, 5) but"


def _pannuke_missing_types(root: Path) -> str:
    (root / "Fold 1" / "images" / "fold1" / "types.npy").unlink()
    return "fold1 has images.npy, masks.npy"


def _consep_v73(root: Path) -> str:
    write_v73_mat(root / "CoNSeP" / "Train" / "Labels" / "train_2.mat")
    return "train_2.mat is a MATLAB v7.3 (HDF5) .mat, which scipy cannot read; re-save it as a v7 file"


def _consep_label_shape(root: Path) -> str:
    savemat(root / "CoNSeP" / "Test" / "Labels" / "test_1.mat", {"inst_map": np.zeros((SIDE, SIDE + 8))})
    return "test_1.mat is 40x32 (WxH) but image"


def _consep_missing_label(root: Path) -> str:
    (root / "CoNSeP" / "Train" / "Labels" / "train_3.mat").unlink()
    return "train_3.png has no label file"


def _consep_no_inst_map(root: Path) -> str:
    savemat(root / "CoNSeP" / "Train" / "Labels" / "train_1.mat", {"type_map": np.zeros((SIDE, SIDE))})
    return "train_1.mat has no `inst_map` (variables: type_map)"


def _lizard_missing_image(root: Path) -> str:
    next(root.rglob("glas_2.png")).unlink()
    return "lists 'glas_2' but no glas_2.png"


def _wsi_missing_mask(root: Path) -> str:
    (root / "lab-a" / "masks" / "region-1.png").unlink()
    return "region-1.tif has no mask"


def _wsi_mask_size(root: Path) -> str:
    from PIL import Image

    Image.new("L", (48, 64)).save(root / "lab-b" / "masks" / "region-2.png")
    return "region-2.png is 48x64 (WxH) but region"


def _lizard_no_info(root: Path) -> str:
    next(root.rglob("info.csv")).unlink()
    return "no info.csv under"


MALFORMED: dict[str, tuple[str, Callable[[Path], str]]] = {
    "monuseg-missing-annotation": ("monuseg", _missing_annotation),
    "monuseg-polygon-outside": ("monuseg", _polygon_outside),
    "monuseg-bad-vertex": ("monuseg", _bad_vertex),
    "pannuke-mask-shape": ("pannuke", _pannuke_mask_shape),
    "pannuke-missing-types": ("pannuke", _pannuke_missing_types),
    "consep-v7.3-mat": ("consep", _consep_v73),
    "consep-label-shape": ("consep", _consep_label_shape),
    "consep-missing-label": ("consep", _consep_missing_label),
    "consep-no-inst-map": ("consep", _consep_no_inst_map),
    "lizard-missing-image": ("lizard", _lizard_missing_image),
    "lizard-no-info": ("lizard", _lizard_no_info),
    "wsi-missing-mask": ("wsi", _wsi_missing_mask),
    "wsi-mask-size": ("wsi", _wsi_mask_size),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_file_is_refused_in_one_line_naming_it(
    tmp_path: Path, tiny_toml: Path, case: str
) -> None:
    fmt, spoil = MALFORMED[case]
    data = tmp_path / "data"
    WRITERS[fmt](data)
    if fmt == "monuseg":  # only two-image sites, so no "left out" warning joins the error line
        for path in [*data.rglob("TCGA-AR-A1AK*"), *data.rglob("TCGA-18-5592*")]:
            path.unlink()
    if fmt == "lizard":
        next(data.rglob("crag_1.png")).unlink()
        info = next(data.rglob("info.csv"))
        info.write_text("\n".join(line for line in info.read_text().splitlines() if "crag_1" not in line))
    needle = spoil(data)
    out = tmp_path / "run"
    outcome = invoke(["train", "-c", tiny_toml, "--data", data, "--data-format", fmt, "--out", out, "-q"])
    assert_refused(outcome, needle)
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--data-format", "pannuke"], "`data.source` is 'synthetic'"),
        (["--data", "{data}", "--data-format", "kumar"], "`data.format` must be one of consep, folder"),
        (["--data", "{data}", "--data-format", "monuseg", "--site-by", "fold"], "one of tss, organ"),
    ],
)
def test_bad_format_flags_are_refused_before_training(
    tmp_path: Path, tiny_toml: Path, flags: list[str], needle: str
) -> None:
    (tmp_path / "data").mkdir()
    args = [f.replace("{data}", str(tmp_path / "data")) for f in flags]
    out = tmp_path / "run"
    assert_refused(invoke(["attack", "-c", tiny_toml, *args, "--out", out, "-q"]), needle)
    assert not out.exists()


def test_data_format_folder_is_the_layout_it_always_was(tmp_path: Path, tiny_toml: Path) -> None:
    """Naming the default format changes nothing but the config hash: same sites, same tiles."""
    from PIL import Image

    for site in ("lab-a", "lab-b"):
        for k in range(2):
            for sub in ("images", "masks"):
                (tmp_path / "data" / site / sub).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (40 * k + 20, 90, 200)).save(
                tmp_path / "data" / site / "images" / f"t{k}.png"
            )
            Image.new("L", (16, 16), 255 * k).save(tmp_path / "data" / site / "masks" / f"t{k}.png")
    runs = {}
    for name, extra in (("plain", []), ("named", ["--data-format", "folder"])):
        out = tmp_path / name
        args = ["train", "-c", str(tiny_toml), "--data", str(tmp_path / "data"), *extra]
        result = runner.invoke(app, [*args, "--rounds", "1", "--out", str(out), "-q"])
        assert result.exit_code == 0, result.output
        runs[name] = (out / "metrics.csv").read_text()
    assert runs["plain"] == runs["named"]
