"""The honest-server frontier page: its matrices from hand-made rows, and when it is drawn at all."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from reports import build_report
from reports.frontier import frontier_caption, frontier_markdown, frontier_pages, frontier_panels, one_cell


def _row(batch: int | None, steps: int | None, **values: Any) -> dict[str, Any]:
    """A finished honest-server row of the undefended arm (override any column with ``values``)."""
    row = {
        "key": f"{batch}-{steps}-{values.get('seed', 0)}",
        "attack": "inverting-gradients",
        "threat": "honest",
        "defense": "none",
        "noise": 0.0,
        "seed": 0,
        "target_site": 1,
        "batch_size": batch,
        "local_steps": steps,
        "dice": 0.8,
        "psnr": 20.0,
        "prior_psnr": 14.0,
        "mask_prior_psnr": 15.0,
        "epsilon": None,
        "delta": None,
    }
    return row | values


def _dp(batch: int, steps: int, psnr: float, epsilon: float) -> dict[str, Any]:
    return _row(
        batch,
        steps,
        defense="dp-sgd",
        noise=0.5,
        psnr=psnr,
        epsilon=epsilon,
        delta=1e-5,
        granularity="sample-level",
        accountant="rdp",
    )


@pytest.fixture
def rows() -> list[dict[str, Any]]:
    """Batch sizes {1, 4} × local steps {1, 3}, the undefended (4, 3) cell missing."""
    return [
        # two seeds pooled in one cell: mean PSNR 21 over the painted-mask prior's 15
        _row(1, 1, psnr=20.0),
        _row(1, 1, psnr=22.0, seed=1),
        # no painted-mask prior (masks unknown): read against the mean-colour prior
        _row(1, 3, psnr=15.0, mask_prior_psnr=None),
        _row(4, 1, psnr=15.5),
        _dp(1, 1, 16.0, 2.0),
        _dp(1, 3, 15.0, 3.5),
        _dp(4, 1, 14.0, 0.5),
        _dp(4, 3, 15.25, 0.8),
        # a malicious server's attack is never on the honest server's page
        _row(1, 1, attack="model-swap", threat="malicious", psnr=60.0),
        _row(4, 3, attack="model-swap", threat="malicious", psnr=60.0),
        # a row without the settings (written before they were recorded) is left out
        _row(None, None, psnr=99.0),
    ]


def test_the_margin_matrix_per_arm_with_a_missing_cell(rows: list[dict[str, Any]]) -> None:
    none, dp = frontier_panels(rows)
    assert (none.attack, none.label, dp.label) == ("inverting-gradients", "none", "dp-sgd σ=0.5")
    assert none.batch_sizes == dp.batch_sizes == (1, 4) and none.local_steps == (1, 3)
    # rows: local steps 1, 3; columns: batch sizes 1, 4
    assert none.matrix() == [[pytest.approx(6.0), pytest.approx(0.5)], [pytest.approx(1.0), None]]
    assert dp.matrix() == [[1.0, -1.0], [0.0, pytest.approx(0.25)]]
    assert dp.matrix("epsilon") == [[2.0, 0.5], [3.5, 0.8]]
    assert none.matrix("epsilon") == [[None, None], [None, None]]


def test_no_page_without_two_cells(rows: list[dict[str, Any]]) -> None:
    one_cell = [r for r in rows if (r["batch_size"], r["local_steps"]) in ((1, 1), (None, None))]
    assert frontier_panels(one_cell) == [] and frontier_pages(one_cell) == []
    assert frontier_panels([_row(None, None), _row(None, None, seed=1)]) == []
    malicious_only = [r for r in rows if r["threat"] == "malicious"]
    assert frontier_panels(malicious_only) == []  # two cells, but no honest-server attack


def test_the_page_annotates_every_cell_and_says_a_margin_is_a_lower_bound(rows: list[dict[str, Any]]) -> None:
    (page,) = frontier_pages(rows)
    cells = [t.get_text() for ax in page.axes for t in ax.texts]
    assert cells.count("–") == 1 and "+6.0 dB" in cells and "+0.2 dB\nε 0.8" in cells
    titles = [ax.get_title() for ax in page.axes if ax.get_title()]
    assert titles == ["none\nε = ∞, no formal guarantee", "dp-sgd σ=0.5\nδ = 1e-05, sample-level, rdp"]
    caption = " ".join(t.get_text() for t in page.texts)
    assert "lower bound on what this attacker could rebuild, never an upper bound" in caption.replace(
        "\n", " "
    )
    assert "rebuilt no more than the guess" in frontier_caption()


def test_summary_markdown_holds_the_same_matrices(rows: list[dict[str, Any]]) -> None:
    text = "\n".join(frontier_markdown(rows))
    assert "### none (ε = ∞, no formal guarantee)" in text
    assert "| 1 | +6.0 | +0.5 |\n| 3 | +1.0 | – |" in text
    assert (
        "### dp-sgd σ=0.5 (δ = 1e-05, sample-level, rdp)" in text
        and "| 1 | +1.0, ε 2 | -1.0, ε 0.5 |" in text
    )
    assert frontier_markdown(rows[:1]) == []


def test_a_report_without_the_axes_has_no_frontier_page(synthetic_sweep: Any, tmp_path: Path) -> None:
    result = build_report(synthetic_sweep.root, tmp_path / "report.pdf")
    assert "Honest-server frontier" not in result.pages
    assert "Honest-server frontier" not in result.markdown.read_text()


def test_a_report_over_batch_sizes_has_the_page(synthetic_sweep: Any, tmp_path: Path) -> None:
    path = synthetic_sweep.root / "results.csv"
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        header, lines = list(reader.fieldnames or []), list(reader)
    for i, line in enumerate(lines):  # the seeds' runs become two batch sizes instead
        line["batch_size"], line["local_steps"] = str(1 + 3 * (i % 2)), "1"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(lines)
    result = build_report(synthetic_sweep.root, tmp_path / "report.pdf")
    assert result.pages.count("Honest-server frontier") == 2  # 7 arms: 6 panels, then 1
    assert result.markdown.read_text().count("local steps \\ batch size") == 7
    assert result.pages.index("Honest-server frontier") > result.pages.index("Reconstruction gallery")
    # every other page reads one cell: the base config's batch size is not in the sweep, so the smallest
    assert "reads one of them, batch size 1 with 1 local steps, so that" in result.markdown.read_text()


def test_the_other_pages_read_one_cell_the_base_configs_when_present(rows: list[dict[str, Any]]) -> None:
    kept, note = one_cell(rows, base=(4, 1))
    assert {(r["batch_size"], r["local_steps"]) for r in kept} == {(4, 1)} and len(kept) == 2
    assert note is not None and "4 (local batch size, local steps) cells" in note
    assert "batch size 4 with 1 local steps (the base config’s)" in note
    smallest, note = one_cell(rows, base=(8, 0))  # the base config's cell was not swept
    assert {(r["batch_size"], r["local_steps"]) for r in smallest} == {(1, 1)} and len(smallest) == 4
    assert note is not None and "base config" not in note
    single = [r for r in rows if (r["batch_size"], r["local_steps"]) in ((1, 1), (None, None))]
    assert one_cell(single, base=(1, 1)) == (single, None)  # one cell (and rows without one): as they are
