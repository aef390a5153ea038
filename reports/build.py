"""``build_report``: results files in, a PDF plus summary.md and summary.csv beside it out."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from feddp_eval.errors import RunDirError
from feddp_eval.io import atomic_write_bytes, atomic_write_text, write_csv
from reports.attack_strength import strength_sentences
from reports.feddp import claim_sentences
from reports.results import ResultsSet, load_results
from reports.summary import (
    SettingSummary,
    csv_columns,
    csv_rows,
    leakage_columns,
    markdown_table,
    summarize,
    table,
    utility_columns,
)
from reports.verdicts import mask_prior_note, verdicts

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class ReportResult:
    """What :func:`build_report` wrote.

    Attributes:
        pdf: The report.
        markdown: ``<stem>.md`` beside the PDF: the summary table, verdicts and missing notice.
        csv: ``<stem>.csv`` beside the PDF: the summary table with numeric columns.
        pages: The section title of each PDF page, in order (one entry per page).
        missing: Expected-but-missing points and files, one human-readable line each.
        rows: The number of result rows used.
    """

    pdf: Path
    markdown: Path
    csv: Path
    pages: list[str]
    missing: list[str]
    rows: int


def build_report(source: str | Path, output: str | Path, *, title: str | None = None) -> ReportResult:
    """Build the comparison report of a sweep directory or an attack results directory.

    Reads results files only (never trains or attacks), so it rebuilds in seconds.

    Args:
        source: A sweep directory (``sweep.json`` + ``results.csv``) or an attack results directory
            (``results.json``).
        output: The PDF to write; ``<stem>.md`` and ``<stem>.csv`` are written beside it.
        title: The report title; default names the source directory.

    Raises:
        RunDirError: ``source`` is neither kind of directory, is malformed, or has no result rows.
    """
    import matplotlib

    pdf = Path(output)
    if pdf.suffix.lower() != ".pdf":
        raise RunDirError(f"the report output must end in .pdf, but got {pdf}; pass e.g. -o report.pdf")
    from feddp_eval.rundir.read import read_run

    read_run.cache_clear()  # a notebook may rebuild while a sweep is still writing its runs
    every = load_results(source)
    title = title or f"feddp-eval report: {Path(source).resolve().name}"
    results, cell_note = _one_cell(every)  # the frontier page alone reads every cell
    summaries = summarize(results.rows)
    sentences = verdicts(summaries) + strength_sentences(summaries) + claim_sentences(summaries)
    sentences += [cell_note] if cell_note else []
    note = mask_prior_note(summaries)
    from reports.style import rc_params

    with matplotlib.rc_context(cast(Any, rc_params())):
        sections = _sections(results, summaries, sentences, title, note, every.rows)
        _write_pdf(pdf, sections, title)
    markdown, csv = pdf.with_suffix(".md"), pdf.with_suffix(".csv")
    text = summary_markdown(results, summaries, sentences, title=title, mask_note=note, every=every.rows)
    atomic_write_text(markdown, text)
    write_csv(csv, csv_rows(summaries), csv_columns())
    return ReportResult(
        pdf, markdown, csv, [name for name, _ in sections], list(results.missing), len(results.rows)
    )


def _one_cell(results: ResultsSet) -> tuple[ResultsSet, str | None]:
    """``results`` cut to the one (batch size, local steps) cell the pages other than the frontier
    read (:func:`reports.frontier.one_cell`; the base config's cell when the sweep has it)."""
    from reports.frontier import one_cell

    train = (results.meta.get("base_config") or {}).get("train") or {}
    known = {"batch_size", "local_steps"} <= set(train)
    base = (int(train["batch_size"]), int(train["local_steps"])) if known else None
    rows, note = one_cell(results.rows, base)
    return (replace(results, rows=rows) if note else results), note


def _sections(
    results: ResultsSet,
    summaries: Sequence[SettingSummary],
    sentences: Sequence[str],
    title: str,
    note: str | None,
    every: Sequence[dict[str, Any]],
) -> list[tuple[str, Figure]]:
    """Every page, in order, with its section title; ``every`` holds the rows of every cell, which
    the frontier page alone reads."""
    from reports.curves import curve_pages
    from reports.frontier import frontier_pages
    from reports.gallery import gallery_pages
    from reports.tables import summary_table_pages
    from reports.text_pages import reproducibility_pages, title_page
    from reports.training import training_pages

    lpips_missing = [str(r["lpips_missing"]) for r in results.rows if r.get("lpips_missing")]
    groups = [("Summary", title_page(results, summaries, sentences, title=title, mask_note=note))]
    threats = threat_sections(summaries, results.rows)
    for section, mine, rows in threats:
        # A malicious server's pages always say so; the honest server is the default reading.
        prefix = f"{section} · " if len(threats) > 1 or mine[0].threat == "malicious" else ""
        groups += [
            (f"{prefix}Summary table", summary_table_pages(mine, lpips_missing)),
            (f"{prefix}Privacy–utility curves", curve_pages(mine, rows, section=prefix.rstrip(" ·"))),
            (f"{prefix}Reconstruction gallery", gallery_pages(mine, rows)),
        ]
    groups += [
        ("Honest-server frontier", frontier_pages(every)),  # only when batch size or steps vary
        ("Per-site utility", training_pages(summaries, results.rows)),
        ("Reproducibility", reproducibility_pages(results)),
    ]
    return [(name, fig) for name, figs in groups for fig in figs]


THREAT_SECTIONS = (("honest", "Honest-but-curious server"), ("malicious", "Malicious server"))


def threat_sections(
    summaries: Sequence[SettingSummary], rows: Sequence[dict[str, Any]]
) -> list[tuple[str, list[SettingSummary], list[dict[str, Any]]]]:
    """The settings and rows of each threat model present, honest server first: never one curve for both.

    Rows written before threat models were recorded count as honest-server rows.
    """
    sections = []
    for threat, title in THREAT_SECTIONS:
        mine = [s for s in summaries if s.threat == threat]
        if mine:
            attacks = {s.attack for s in mine}
            sections.append((title, mine, [r for r in rows if str(r.get("attack") or "?") in attacks]))
    return sections


def _write_pdf(path: Path, sections: Sequence[tuple[str, Figure]], title: str) -> None:
    """All pages into one PDF (page footers added here), written atomically; no creation date, so
    the same results give the same bytes."""
    from matplotlib.backends.backend_pdf import PdfPages

    buffer = io.BytesIO()
    metadata = {
        "Title": title,
        "Creator": "feddp-eval report",
        "Subject": "federated-learning privacy evaluation",
    }
    with PdfPages(buffer, metadata={**metadata, "CreationDate": None}) as document:
        for number, (name, fig) in enumerate(sections, start=1):
            # top right: the bottom edge belongs to the figures' legends
            fig.text(
                0.975,
                0.99,
                f"{name} · page {number} of {len(sections)}",
                ha="right",
                va="top",
                fontsize=8,
                color="#777777",
            )
            document.savefig(fig)
    atomic_write_bytes(path, buffer.getvalue())


def summary_markdown(
    results: ResultsSet,
    summaries: Sequence[SettingSummary],
    sentences: Sequence[str],
    *,
    title: str,
    mask_note: str | None,
    every: Sequence[dict[str, Any]] | None = None,
) -> str:
    """summary.md: what was compared, the verdicts, the missing notice and the same two tables as the
    PDF; the frontier's matrices from ``every`` cell's rows (default: ``results.rows``)."""
    from reports.frontier import frontier_markdown
    from reports.tables import footnote
    from reports.text_pages import compared, reproducibility_lines, verdict_rule

    lines = [f"# {title}", "", f"Source: `{results.source}`", "", "## What was compared", ""]
    lines += [f"- {line}" for line in compared(results, summaries)]
    lines += ["", "## Verdict", "", verdict_rule(), ""] + [f"- {s}" for s in sentences]
    if mask_note:
        lines += ["", mask_note]
    if results.missing:
        lines += [
            "",
            "## Missing results",
            "",
            f"{len(results.missing)} expected result(s) or file(s) are missing:",
            "",
        ]
        lines += [f"- {m}" for m in results.missing]
    lines += ["", "## Summary table", "", "### Utility and privacy budget", ""]
    lines += [
        markdown_table(*table(summaries, utility_columns())),
        "",
        "### Leakage: reconstruction vs the prior guess",
        "",
    ]
    lines += [markdown_table(*table(summaries, leakage_columns())), ""]
    lpips_missing = [str(r["lpips_missing"]) for r in results.rows if r.get("lpips_missing")]
    frontier = frontier_markdown(results.rows if every is None else every)
    lines += [footnote(lpips_missing), "", *frontier, "## Reproducibility", ""]
    for heading, items in reproducibility_lines(results).items():
        lines += [f"### {heading}", "", "```", *items, "```", ""]
    hashes = [f"- `{r.get('key')}`: `{r.get('config_hash') or '?'}`" for r in results.rows]
    lines += ["### Full config hashes of the finished points", "", *hashes, ""]
    return "\n".join(lines)
