"""Hostile inputs to a resumed sweep: a corrupt point or results cell is refused by name (issue #16)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from feddp_eval.config import ExperimentConfig, to_toml, with_overrides
from tests.hostile.helpers import _folder, assert_refused, invoke

# --------------------------------------------------------------------------- sweep resume


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A finished one-point sweep (the undefended reference only) and its TOML."""
    from feddp_eval.config import from_dict, validate
    from tests.conftest import TINY

    root = tmp_path_factory.mktemp("swept")
    config = with_overrides(
        validate(from_dict(ExperimentConfig, TINY)), {"train.rounds": 1, "attack.iterations": 2}
    )
    toml = root / "exp.toml"
    toml.write_text(to_toml(config) + "\n[sweep]\nnoises = [0.0]\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    outcome = invoke(["sweep", "--config", toml, "--out", root / "sweep", "--quiet"])
    torch.set_num_threads(threads)
    assert outcome.code == 0, outcome.stderr
    return toml, root / "sweep"


SWEEP_CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "row-json-garbage": (lambda p: p.write_text("{"), "row.json"),
    "row-json-wrong-key": (
        lambda p: p.write_text('{"key": "other", "defense": "none", "attack": "x"}'),
        "row.json",
    ),
    "row-json-mistyped": (
        lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "psnr": "high"})),
        "row.json",
    ),
}


@pytest.mark.parametrize("case", sorted(SWEEP_CASES))
def test_sweep_resume_refuses_a_corrupt_point(case: str, swept: tuple[Path, Path], tmp_path: Path) -> None:
    toml, sweep = swept
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    corrupt, needle = SWEEP_CASES[case]
    [row] = list(copy.glob("points/*/row.json"))
    corrupt(row)
    assert_refused(invoke(["sweep", "--config", toml, "--out", copy, "--quiet"]), needle)


def test_report_refuses_a_corrupted_results_csv_cell(swept: tuple[Path, Path], tmp_path: Path) -> None:
    _, sweep = swept
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    header, row = (copy / "results.csv").read_text().splitlines()[:2]
    cells = row.split(",")
    cells[header.split(",").index("psnr")] = "garbage"
    (copy / "results.csv").write_text(f"{header}\n{','.join(cells)}\n")
    assert_refused(invoke(["report", copy, "-o", tmp_path / "r.pdf", "-q"]), "results.csv: line 2")


def test_report_refuses_a_phantom_results_csv_row(swept: tuple[Path, Path], tmp_path: Path) -> None:
    _, sweep = swept
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    with open(copy / "results.csv", "a") as handle:
        handle.write("junk,,,\n")
    assert_refused(invoke(["report", copy, "-o", tmp_path / "r.pdf", "-q"]), "results.csv: line 3")


def test_sweep_into_a_file_is_refused(swept: tuple[Path, Path], tmp_path: Path) -> None:
    toml, _ = swept
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_refused(invoke(["sweep", "--config", toml, "--out", blocker, "-q"]), str(blocker))


def test_failed_sweep_leaves_no_folder(tiny_toml: Path, tmp_path: Path) -> None:
    """Training the first point fails (a 1-px image): the sweep folder this call made is removed."""
    data = _folder(tmp_path, [32, 32, 1, 32])
    toml = tmp_path / "exp.toml"
    text = tiny_toml.read_text().replace('source = "synthetic"', f'source = "{data}"')
    toml.write_text(text.replace("sites = 2", "sites = 1").replace("train_tiles = [6, 3]", "train_tiles = 6"))
    out = tmp_path / "sweep"
    assert_refused(invoke(["sweep", "--config", toml, "--out", out, "--noise", "0", "-q"]), "t2.png")
    assert not out.exists()
