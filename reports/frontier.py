"""The honest-server frontier: the margin over the strongest prior against local batch size × local steps.

A sweep over ``--batch-size`` and ``--local-steps`` trains each pair as its own run. This page shows,
for every defense arm of the honest-but-curious server's attacks, the attack's mean PSNR minus the
strongest prior's (:attr:`reports.summary.SettingSummary.leakage_gap_db`, the margin the verdicts
read) in each (batch size, local steps) cell, so a reader sees where the honest server stops leaking.
A malicious server's attack is left out: it is not bound by what the client's training averages away.
The matrices are built by pure functions (:func:`frontier_panels`); the page only draws them.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from feddp_eval.schema import MISSING, setting_label
from reports.style import LANDSCAPE, new_page
from reports.summary import (
    LEAK_MARGIN_DB,
    SettingSummary,
    defense_rank,
    fmt_privacy,
    level,
    markdown_table,
    summarize,
)

Cell = tuple[int, int]
"""(batch size, local steps) of a training run."""
PANELS_PER_PAGE = 6
CMAP = "PuOr_r"  # diverging and colour-blind safe: purple below the prior, orange above it


@dataclass(frozen=True)
class FrontierPanel:
    """One defense arm of one honest-server attack over the (batch size × local steps) grid.

    Attributes:
        attack: The attack's registered name; ``defense`` and ``noise``: the arm.
        batch_sizes: The grid's local batch sizes (columns), ascending.
        local_steps: The grid's local steps per round (rows), ascending; 0 is ``train.local_epochs``
            passes.
        cells: The arm's summary in each cell that has rows (seeds and targets pooled, as everywhere
            in the report); a cell of the grid the arm has no row in is absent.
    """

    attack: str
    defense: str
    noise: float
    batch_sizes: tuple[int, ...]
    local_steps: tuple[int, ...]
    cells: dict[Cell, SettingSummary]

    @property
    def label(self) -> str:
        """``none`` or ``dp-sgd σ=0.01``."""
        return setting_label(self.defense, self.noise)

    def matrix(self, value: str = "margin") -> list[list[float | None]]:
        """``margin`` (dB over the strongest prior) or ``epsilon`` per cell: one list per local-steps
        value (rows), one entry per batch size (columns); ``None`` where nothing was measured."""
        read = {"margin": lambda s: s.leakage_gap_db, "epsilon": lambda s: s.epsilon}[value]
        return [
            [read(self.cells[(b, k)]) if (b, k) in self.cells else None for b in self.batch_sizes]
            for k in self.local_steps
        ]


def frontier_panels(rows: Sequence[dict[str, Any]]) -> list[FrontierPanel]:
    """One panel per (honest-server attack, defense arm), undefended first then by noise; empty unless
    the rows span at least two (batch size, local steps) cells. Rows without either setting (a sweep
    that did not vary them, or one written before they were recorded) are left out."""
    by_cell: dict[Cell, list[dict[str, Any]]] = {}
    for row in rows:
        batch, steps = row.get("batch_size"), row.get("local_steps")
        if batch is not None and steps is not None:
            by_cell.setdefault((int(batch), int(steps)), []).append(row)
    batch_sizes = tuple(sorted({b for b, _ in by_cell}))
    local_steps = tuple(sorted({k for _, k in by_cell}))
    if len(batch_sizes) * len(local_steps) < 2:
        return []
    arms: dict[tuple[str, str, float], dict[Cell, SettingSummary]] = {}
    for cell, mine in by_cell.items():
        for summary in summarize(mine):
            if summary.threat == "honest":
                arms.setdefault(summary.key, {})[cell] = summary
    order = sorted(arms, key=lambda k: (k[0], defense_rank(k[1]), k[2]))
    return [FrontierPanel(a, d, n, batch_sizes, local_steps, arms[(a, d, n)]) for a, d, n in order]


def one_cell(rows: Sequence[dict[str, Any]], base: Cell | None) -> tuple[list[dict[str, Any]], str | None]:
    """The rows every page but the frontier reads, and the sentence that says so.

    When the rows span several (batch size, local steps) cells, pooling them would average settings
    that leak differently into one verdict or curve; the other pages then read one cell: the base
    config's (``base``) when the sweep has it, else the smallest. Rows without the settings (an
    older sweep) and a single cell are returned as they are, with no sentence."""
    cells = sorted({(int(r["batch_size"]), int(r["local_steps"])) for r in rows if _has_cell(r)})
    if len(cells) < 2:
        return list(rows), None
    chosen = base if base in cells else cells[0]
    kept = [r for r in rows if _has_cell(r) and (int(r["batch_size"]), int(r["local_steps"])) == chosen]
    batch, steps = chosen
    return kept, (
        f"This sweep trained {len(cells)} (local batch size, local steps) cells; every page but the "
        f"honest-server frontier reads one of them, batch size {batch} with {steps} local steps"
        f"{' (the base config’s)' if chosen == base else ''}, so that no verdict or curve pools settings "
        "that leak differently."
    )


def _has_cell(row: dict[str, Any]) -> bool:
    return row.get("batch_size") is not None and row.get("local_steps") is not None


def frontier_caption() -> str:
    """What a cell means, in the verdicts' words (:mod:`reports.verdicts`)."""
    return (
        "Each cell: the attack's mean PSNR minus the strongest prior's mean PSNR, in dB, over the cell's "
        "seeds and targets (the strongest prior is the masks painted in the site's public colours when "
        "the masks were known, else the site's mean colour; the same margin the verdicts read). Above "
        f"+{LEAK_MARGIN_DB:g} dB the update leaks. A margin is a lower bound on what this attacker could "
        "rebuild, never an upper bound: a cell at or below the threshold says this attack rebuilt no "
        "more than the guess there, not that the setting does not leak; a stronger attack may rebuild "
        f"more. ε (at the δ of the panel's title) is the accountant's for that cell's run. {MISSING}: no "
        "result. Local steps 0 train local_epochs passes. The other pages read one cell (the base "
        "config's when swept, else the smallest), which the verdicts name."
    )


def frontier_markdown(rows: Sequence[dict[str, Any]]) -> list[str]:
    """summary.md's lines of the frontier (empty without it): one table per arm, margins in dB, local
    steps down and batch sizes across, then :func:`frontier_caption`."""
    panels = frontier_panels(rows)
    if not panels:
        return []
    lines = ["## Honest-server frontier", ""]
    for panel in panels:
        name = f"{panel.attack} · {panel.label}" if len({p.attack for p in panels}) > 1 else panel.label
        headers = ["local steps \\ batch size", *(str(b) for b in panel.batch_sizes)]
        epsilons = panel.matrix("epsilon")
        cells = [
            [
                str(k),
                *(_cell_text(m, e, panel.defense, unit="", sep=", ") for m, e in zip(line, eps, strict=True)),
            ]
            for k, line, eps in zip(panel.local_steps, panel.matrix(), epsilons, strict=True)
        ]
        lines += [f"### {name} ({_privacy(panel)})", "", markdown_table(headers, cells), ""]
    return [*lines, frontier_caption(), ""]


def frontier_pages(rows: Sequence[dict[str, Any]]) -> list[Figure]:
    """The honest-server frontier pages (up to :data:`PANELS_PER_PAGE` arms each, on one colour
    scale), or none when the rows do not vary batch size or local steps."""
    panels = frontier_panels(rows)
    if not panels:
        return []
    several = len({p.attack for p in panels}) > 1
    margins = [m for p in panels for line in p.matrix() for m in line if m is not None and math.isfinite(m)]
    limit = max([2 * LEAK_MARGIN_DB, *(abs(m) for m in margins)])
    chunks = [panels[i : i + PANELS_PER_PAGE] for i in range(0, len(panels), PANELS_PER_PAGE)]
    pages = []
    for number, chunk in enumerate(chunks, start=1):
        part = f" ({number}/{len(chunks)})" if len(chunks) > 1 else ""
        fig, axes = _page(f"Honest-server frontier{part}", len(chunk))
        images = [
            _panel(ax, panel, limit, with_attack=several) for ax, panel in zip(axes, chunk, strict=True)
        ]
        fig.colorbar(images[0], ax=axes, label="margin over the strongest prior, dB", shrink=0.8)
        fig.text(
            0.05,
            0.09,
            "\n".join(textwrap.wrap(frontier_caption(), 175)),
            fontsize=8,
            va="top",
            color="#333333",
        )
        pages.append(fig)
    return pages


def _page(title: str, panels: int) -> tuple[Figure, list[Axes]]:
    fig = new_page(LANDSCAPE)
    fig.set_layout_engine("constrained", rect=(0.02, 0.1, 0.96, 0.8), h_pad=0.15, w_pad=0.15)
    fig.suptitle(title, x=0.05, y=0.975, ha="left", fontsize=15, weight="bold")
    fig.text(
        0.05,
        0.94,
        "Honest-but-curious server: margin over the strongest prior against the clients' local batch size\n"
        "and local steps, one panel per defense arm. Where it falls to the prior, this attack stops leaking.",
        fontsize=9,
        va="top",
        color="#333333",
    )
    cols = min(3, panels)
    grid = fig.subplots(math.ceil(panels / cols), cols, squeeze=False)
    axes = list(grid.ravel())
    for extra in axes[panels:]:
        extra.remove()
    return fig, axes[:panels]


def _panel(ax: Axes, panel: FrontierPanel, limit: float, *, with_attack: bool) -> AxesImage:
    """One arm's heatmap, each cell annotated with its margin (and ε under a defense)."""
    from matplotlib import colormaps

    cmap = colormaps[CMAP].with_extremes(bad="#DDDDDD")
    values = np.array([[np.nan if m is None else m for m in line] for line in panel.matrix()], dtype=float)
    image = ax.imshow(values, cmap=cmap, vmin=-limit, vmax=limit, origin="lower", aspect="auto")
    epsilons = panel.matrix("epsilon")
    for i, line in enumerate(panel.matrix()):
        for j, margin in enumerate(line):
            ax.text(
                j,
                i,
                _cell_text(margin, epsilons[i][j], panel.defense),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if margin is not None and abs(margin) > 0.6 * limit else "black",
            )
    ax.set_xticks(range(len(panel.batch_sizes)), [str(b) for b in panel.batch_sizes])
    ax.set_yticks(range(len(panel.local_steps)), [str(k) for k in panel.local_steps])
    ax.set_xlabel("local batch size")
    ax.set_ylabel("local steps per round")
    title = f"{panel.attack} · {panel.label}" if with_attack else panel.label
    ax.set_title(f"{title}\n{_privacy(panel)}", fontsize=9)
    return image


def _cell_text(
    margin: float | None, epsilon: float | None, defense: str, *, unit: str = " dB", sep: str = "\n"
) -> str:
    """``+1.2 dB`` and, under a defense with an accountant, the cell's ``ε 3.4`` below it."""
    if margin is None:
        return MISSING
    text = f"{margin:+.1f}{unit}"
    if defense != "none" and epsilon is not None and math.isfinite(epsilon):
        text += f"{sep}ε {epsilon:.3g}"
    return text


def _privacy(panel: FrontierPanel) -> str:
    """The arm's δ, granularity and accountant (ε varies by cell), or that it has no guarantee."""
    first = next(iter(panel.cells.values()))
    if panel.defense == "none" or not isinstance(first.delta, float):
        return fmt_privacy(first)
    granularity = level(first.granularity)
    accountant = first.accountant if isinstance(first.accountant, str) else None
    parts = (f"δ = {first.delta:g}", f"{granularity}-level" if granularity else None, accountant)
    return ", ".join(x for x in parts if x)
