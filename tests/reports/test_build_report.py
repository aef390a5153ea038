"""build_report end to end on synthetic results directories: PDF, summary.md, summary.csv, partial input."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pypdf import PdfReader

from feddp_eval.errors import RunDirError
from reports import build_report, load_results
from reports.summary import fmt_privacy, summarize, table, utility_columns

SECTIONS = (
    "Summary",
    "Threat model",
    "Verdict",
    "Privacy–utility curves",
    "Reconstruction gallery",
    "Per-site utility",
    "Reproducibility",
)


def _cell(rows: list[dict[str, Any]], metric: str, decimals: int) -> str:
    values = np.array([r[metric] for r in rows])
    return f"{values.mean():.{decimals}f} ± {values.std(ddof=1):.{decimals}f}"


def test_pdf_has_sections_numbers_and_verdicts(built_report: Any) -> None:
    result, text = built_report.result, built_report.text
    reader = PdfReader(result.pdf)
    assert len(reader.pages) >= 6 and len(reader.pages) == len(result.pages)
    assert reader.metadata.title == "feddp-eval report: sweep"
    assert (result.rows, result.missing) == (14, [])
    assert result.pages[0] == "Summary" and result.pages[-1] == "Reproducibility"
    for section in SECTIONS:
        assert section in text, section
    rows = built_report.sweep.rows_of("dp-sgd", 0.1)
    dice, psnr = _cell(rows, "dice", 3), _cell(rows, "psnr", 1)
    assert (dice, psnr) == ("0.805 ± 0.014", "15.0 ± 0.2")  # the numbers the table must show
    table_page = built_report.page_texts[result.pages.index("Summary table")]
    assert f"dp-sgd 0.1 20 1e-05 sample rdp 2 {dice}" in table_page
    assert f"dp-sgd 0.1 20 {psnr}" in table_page
    assert (
        "local-dp 1 5 1e-05 client rdp 2 0.685 ± 0.007 0.521 ± 0.008 0.895 ± 0.007 — -15.4% (lower, 2 seeds)"
        in table_page
    )
    assert (
        "from σ = 0.1 (ε = 20, δ = 1e-05, sample-level, rdp) this attack rebuilt no more than the guess"
        in text
    )
    assert "local-dp leaks at every tested noise (σ = 0.01 to 1)" in text
    assert "mask-painted prior" in text and "honest-but-curious server" in text
    assert "σ=0.01 · PSNR 19.0 dB" in text  # gallery row label: seed 0's PSNR at σ=0.01
    assert "prior guess: masks painted in the site's colours · PSNR 14.5 dB" in text  # seed 0's mask prior
    assert "feddp-eval report" in text and "-o report.pdf" in text
    assert "0000abcdef01 000000000000" in text  # a point's key and shortened config hash


def test_summary_csv_round_trips_the_numbers(built_report: Any) -> None:
    with open(built_report.result.csv, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["defense"], float(r["noise"])) for r in table][:3] == [
        ("none", 0.0),
        ("dp-sgd", 0.01),
        ("dp-sgd", 0.1),
    ]
    sweep = built_report.sweep
    dice_none = np.mean([r["dice"] for r in sweep.rows_of("none", 0.0)])
    for row in table:
        rows = sweep.rows_of(row["defense"], float(row["noise"]))
        assert int(row["n"]) == len(rows)
        for metric in ("dice", "psnr", "ssim", "lpips", "prior_psnr"):
            values = np.array([r[metric] for r in rows])
            assert float(row[f"{metric}_mean"]) == pytest.approx(values.mean(), rel=1e-12)
            assert float(row[f"{metric}_sd"]) == pytest.approx(values.std(ddof=1), rel=1e-9, abs=1e-12)
        assert row["mask_dice_mean"] == "" and row["mask_dice_sd"] == ""
        expected = 100 * (np.mean([r["dice"] for r in rows]) - dice_none) / dice_none
        assert float(row["dice_change_pct"]) == pytest.approx(expected, abs=1e-9)
        assert row["epsilon"] == ("" if row["defense"] == "none" else row["epsilon"])
    assert float(table[1]["epsilon"]) == pytest.approx(200.0)


def test_markdown_holds_the_same_table_and_verdicts(built_report: Any) -> None:
    md = built_report.result.markdown.read_text()
    assert built_report.result.markdown == built_report.result.pdf.with_suffix(".md")
    assert "| dp-sgd | 0.1 | 20 | 1e-05 | sample | rdp | 2 | 0.805 ± 0.014 |" in md
    assert "| dp-sgd | 0.1 | 20 | 15.0 ± 0.2 |" in md
    assert "- dp-sgd: from σ = 0.1" in md and "Missing results" not in md
    assert "`0000abcdef01`: `" + "00" * 32 + "`" in md


def test_partial_results_render_and_name_what_is_missing(
    synthetic_sweep: Any, tmp_path: Path, extract_pdf_text: Any
) -> None:
    sweep = synthetic_sweep
    sweep.rewrite_results(
        lambda r: (
            not (r["defense"] == "dp-sgd" and r["noise"] == 0.01 and r["seed"] == 1)
            and not (r["defense"] == "local-dp" and r["noise"] == 1.0)
        )
    )
    lost = next(r for r in sweep.rows if r["defense"] == "dp-sgd" and r["noise"] == 1.0 and r["seed"] == 0)
    (sweep.root / lost["tiles"]).unlink()
    result = build_report(sweep.root, tmp_path / "partial.pdf")
    assert result.rows == 11
    assert result.missing[:3] == [
        "dp-sgd σ=0.01 seed 1 (inverting-gradients, site -1): not finished",
        "local-dp σ=1 seed 0 (inverting-gradients, site -1): not finished",
        "local-dp σ=1 seed 1 (inverting-gradients, site -1): not finished",
    ]
    assert result.missing[3] == (
        f"dp-sgd σ=1 seed 0 (inverting-gradients, site 1): tiles file {lost['tiles']} is missing "
        "(gallery cell skipped)"
    )
    text = " ".join(extract_pdf_text(result.pdf))
    md = result.markdown.read_text()
    for line in result.missing:
        assert line in md
    assert "Missing results" in text and "4 expected result(s) or file(s) are missing" in text
    assert "dp-sgd σ=0.01 seed 1 (inverting-gradients, site -1): not finished" in text
    assert "Results: 11 of 14 expected points finished" in text
    assert "(seed 1, site 1)" in text  # σ=1's gallery cell falls back to the readable seed


def test_zero_rows_raise_naming_missing_points(synthetic_sweep: Any, tmp_path: Path) -> None:
    synthetic_sweep.rewrite_results(lambda r: False)
    with pytest.raises(
        RunDirError, match=r"no result rows yet .*none seed 0 \(inverting-gradients, site -1\)"
    ) as err:
        build_report(synthetic_sweep.root, tmp_path / "r.pdf")
    assert err.value.exit_code == 2 and "\n" not in str(err.value)
    assert not (tmp_path / "r.pdf").exists()


def test_directory_without_results_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"holds neither a sweep \(sweep\.json\) nor attack results"):
        build_report(tmp_path, tmp_path / "r.pdf")
    with pytest.raises(RunDirError, match="does not exist"):
        load_results(tmp_path / "nowhere")


def test_wrong_sweep_format_and_output_suffix_are_errors(synthetic_sweep: Any, tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match=r"must end in \.pdf"):
        build_report(synthetic_sweep.root, tmp_path / "report.md")
    meta = json.loads((synthetic_sweep.root / "sweep.json").read_text())
    (synthetic_sweep.root / "sweep.json").write_text(json.dumps({**meta, "format": 2}))
    with pytest.raises(RunDirError, match="has format 2, but this feddp-eval reads format 1"):
        load_results(synthetic_sweep.root)


def test_attack_results_directory_renders(
    attack_results: Path, tmp_path: Path, extract_pdf_text: Any
) -> None:
    results = load_results(attack_results)
    assert results.kind == "attack" and [r["seed"] for r in results.rows] == [
        7,
        7,
    ]  # from each run's manifest
    assert [r["target_site"] for r in results.rows] == [1, 1] and results.rows[0]["mask"] == "unknown"
    result = build_report(attack_results, tmp_path / "attack.pdf", title="Attack check")
    text = " ".join(extract_pdf_text(result.pdf))
    assert result.rows == 2 and result.missing == [] and len(result.pages) >= 6
    assert "Attack check" in text and "dp-sgd 1.1 1.82 1e-05 sample rdp 1" in text
    assert "0.680" in text  # mask Dice of σ=1.1 (mask unknown: scored)
    md = result.markdown.read_text()
    assert "| dp-sgd | 1.1 | 1.82 |" in md and "site site-1 round 2, 3 tiles" in md


def test_sweep_spellings_and_runtime_csv_are_understood(synthetic_sweep: Any) -> None:
    """The real sweep writes granularity as "sample-level"/"none" and timings into runtime.csv."""
    for row in synthetic_sweep.rows:
        row["granularity"] = "none" if row["defense"] == "none" else f"{row['granularity']}-level"
        row["seconds"] = row["objective"] = None
    synthetic_sweep.rewrite_results(lambda r: True)
    key = synthetic_sweep.rows[0]["key"]
    (synthetic_sweep.root / "runtime.csv").write_text(
        f"key,train_seconds,seconds,objective\n{key},1.5,8.25,0.02\n"
    )
    rows = load_results(synthetic_sweep.root).rows
    assert (rows[0]["seconds"], rows[0]["objective"], rows[1]["seconds"]) == (8.25, 0.02, None)
    summaries = summarize(rows)
    assert fmt_privacy(summaries[2]) == "ε = 20, δ = 1e-05, sample-level, rdp"
    _, cells = table(summaries, utility_columns())
    assert [c[4] for c in cells[:3]] == ["—", "sample", "sample"]


def test_points_finished_after_the_last_results_csv_rebuild_count(synthetic_sweep: Any) -> None:
    late = synthetic_sweep.rows[-1]
    synthetic_sweep.rewrite_results(lambda r: r is not late)
    folder = synthetic_sweep.root / "points" / late["key"]
    folder.mkdir(parents=True)
    (folder / "row.json").write_text(json.dumps(late))
    results = load_results(synthetic_sweep.root)
    assert len(results.rows) == 14 and results.missing == []
    assert results.rows[-1]["psnr"] == late["psnr"] and results.rows[-1]["tiles_path"].is_file()


def test_reports_import_no_torch() -> None:
    code = (
        "import sys, reports.build, reports.curves, reports.gallery, reports.tables, reports.training, "
        "reports.text_pages; assert 'torch' not in sys.modules, 'reports imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
