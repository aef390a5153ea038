"""The summary table pages: utility and privacy budget, then leakage, one row per defense setting."""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.style import LANDSCAPE, new_page, page_heading
from reports.summary import SettingSummary, leakage_columns, table, utility_columns

ROWS_SHARED_PAGE = 12  # up to this many settings, both tables share one page
ROWS_PER_PAGE = 26
FONT = 8.5


def footnote(lpips_missing: Sequence[str]) -> str:
    """What the cells mean; shared by the PDF and summary.md."""
    text = (
        "Cells: mean ± sd over the n seeds and targets (sample sd, ddof = 1; the plain mean when n = 1). "
        "ΔDice = 100·(Dice − Dice_none)/Dice_none; in brackets, whether it is outside seed noise (paired "
        "t interval over seeds at 95%: lower/higher, or within seed noise; one seed cannot tell). "
        "ε is the accountant's ε at δ, at the stated granularity "
        "(∞: no defense). leaks: mean PSNR > the reference prior's + 1 dB (the mask-painted prior when the "
        "masks were known, else the mean-colour prior). —: not measured (mask Dice is not "
        "scored when the attacker knows the mask; the mask-painted prior exists only then)."
    )
    if lpips_missing:
        text += f" LPIPS not measured: {'; '.join(sorted(set(lpips_missing)))}."
    return text


def summary_table_pages(summaries: Sequence[SettingSummary], lpips_missing: Sequence[str]) -> list[Figure]:
    """One page with both tables when few settings, else each table over as many pages as needed."""
    note = footnote(lpips_missing)
    utility = ("Utility and privacy budget", *table(summaries, utility_columns()))
    leakage = ("Leakage: reconstruction vs the prior guess", *table(summaries, leakage_columns()))
    if len(summaries) <= ROWS_SHARED_PAGE:
        fig = new_page(LANDSCAPE)
        page_heading(fig, "Summary table", "One row per defense setting, aggregated over seeds and targets.")
        _draw(fig.add_axes((0.04, 0.52, 0.92, 0.37)), *utility)
        _draw(fig.add_axes((0.04, 0.10, 0.92, 0.37)), *leakage)
        _footnote(fig, note)
        return [fig]
    pages = []
    for name, headers, cells in (utility, leakage):
        chunks = [cells[i : i + ROWS_PER_PAGE] for i in range(0, len(cells), ROWS_PER_PAGE)]
        for i, chunk in enumerate(chunks):
            fig = new_page(LANDSCAPE)
            part = f" ({i + 1}/{len(chunks)})" if len(chunks) > 1 else ""
            page_heading(fig, "Summary table", f"{name}{part}: one row per defense setting.")
            _draw(fig.add_axes((0.04, 0.10, 0.92, 0.80)), name + part, headers, chunk)
            _footnote(fig, note)
            pages.append(fig)
    return pages


def _draw(ax: Axes, name: str, headers: list[str], cells: list[list[str]]) -> None:
    ax.set_axis_off()
    ax.set_title(name, loc="left", fontsize=11, weight="bold")
    padded = [[f"  {c}  " for c in row] for row in cells]  # auto widths are otherwise tight to the text
    tbl = ax.table(
        cellText=padded, colLabels=[f"  {h}  " for h in headers], loc="upper center", cellLoc="center"
    )
    tbl.auto_set_font_size(False)
    tbl.set_fontsize(FONT)
    tbl.auto_set_column_width(list(range(len(headers))))
    row_height = min(0.07, 0.95 / (len(cells) + 1))
    for (row, _), cell in tbl.get_celld().items():
        cell.set_height(row_height)
        cell.set_edgecolor("#BBBBBB")
        cell.set_linewidth(0.5)
        if row == 0:
            cell.set_facecolor("#E8EEF4")
            cell.get_text().set_fontweight("bold")
        elif row % 2 == 0:
            cell.set_facecolor("#F7F7F7")


def _footnote(fig: Figure, text: str) -> None:
    import textwrap

    fig.text(
        0.04, 0.065, "\n".join(textwrap.wrap(text, 175)), fontsize=8, va="top", ha="left", color="#333333"
    )
