"""`feddp-eval report` on a real (tiny) sweep: the PDF carries the sweep's numbers; gaps are named."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feddp_eval.cli import app
from feddp_eval.config import ExperimentConfig
from feddp_eval.sweep import SweepSpec

runner = CliRunner()


@pytest.fixture
def tiny_sweep(tmp_path: Path, tiny_config: ExperimentConfig) -> Path:
    from feddp_eval.pipeline import run_sweep

    config = dataclasses.replace(
        tiny_config,
        train=dataclasses.replace(tiny_config.train, rounds=2),
        attack=dataclasses.replace(tiny_config.attack, iterations=15),
    )
    out = tmp_path / "sweep"
    run_sweep(config, SweepSpec(noises=(0.01, 1.1), defenses=("dp-sgd",)), out=out, command=["test"])
    return out


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() or "" for page in PdfReader(path).pages)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_report_of_a_real_sweep_carries_its_numbers(tiny_sweep: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "out" / "report.pdf"
    result = runner.invoke(app, ["report", str(tiny_sweep), "-o", str(pdf), "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.stdout)
    assert written["missing"] == [] and written["rows"] == 3
    text = _pdf_text(pdf)
    for section in ("Threat model", "Verdict", "Summary", "Privacy–utility curves", "Reconstruction gallery"):
        assert section in text
    assert "Per-site utility" in text and "Reproducibility" in text
    rows = _rows(tiny_sweep / "results.csv")
    for row in rows:  # every setting's Dice and PSNR, as the summary formats them
        assert f"{float(row['dice']):.3f}" in text
        assert f"{float(row['psnr']):.1f}" in text
    assert f"{float(rows[2]['epsilon']):.3g}" in text
    summary = _rows(Path(written["csv"]))
    assert [float(r["dice_mean"]) for r in summary] == pytest.approx([float(r["dice"]) for r in rows])
    none_dice = float(rows[0]["dice"])
    assert float(summary[2]["dice_change_pct"]) == pytest.approx(
        100 * (float(rows[2]["dice"]) - none_dice) / none_dice
    )
    assert rows[0]["key"] in text  # the reproducibility page lists every point's key
    # two settings, each in the utility table and the leakage table
    assert Path(written["markdown"]).read_text().count("| dp-sgd") == 4


def test_report_names_missing_points_and_renders_the_rest(tiny_sweep: Path, tmp_path: Path) -> None:
    import shutil

    # as if the sweep had stopped before its last point
    results = tiny_sweep / "results.csv"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:-1]))
    shutil.rmtree(tiny_sweep / "points" / lines[-1].split(",")[0])
    pdf = tmp_path / "partial.pdf"
    result = runner.invoke(app, ["report", str(tiny_sweep), "-o", str(pdf)])
    assert result.exit_code == 0, result.output
    assert "σ=1.1" in result.output and "missing" in result.output
    assert pdf.is_file() and "1.1" in _pdf_text(pdf)


def test_report_on_a_folder_without_results_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path), "-o", str(tmp_path / "r.pdf")])
    assert result.exit_code == 2
    assert "sweep.json" in result.output or "results" in result.output
