"""Per-site utility: pooled Dice per round for each setting, and final-round Dice per site (a heatmap)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from feddp_eval.rundir.read import RunFiles, read_run
from reports.style import LANDSCAPE, new_page
from reports.summary import SettingSummary, defense_rank, fmt_noise

CMAP = "cividis"  # perceptually uniform and colour-blind safe


def training_pages(summaries: Sequence[SettingSummary], rows: Sequence[dict[str, Any]]) -> list[Figure]:
    """One landscape page: Dice per round (a panel per defense) above the per-site heatmap."""
    # training does not depend on the attack: the first attack's settings cover every run
    summaries = [s for s in summaries if s.attack == summaries[0].attack]
    runs: dict[str, RunFiles] = {}
    for s in summaries:
        run = _first_run(s, rows)
        if run is not None and run.metrics:
            runs[s.label] = run
    fig = new_page(LANDSCAPE)
    fig.set_layout_engine("constrained", rect=(0.02, 0.03, 0.96, 0.88), h_pad=0.12)
    fig.suptitle("Per-site utility", x=0.05, y=0.975, ha="left", fontsize=15, weight="bold")
    fig.text(
        0.05,
        0.935,
        "Training curves and final-round Dice per site, first seed of each setting (from metrics.csv).",
        fontsize=9,
        color="#333333",
    )
    if not runs:
        fig.text(0.5, 0.5, "No run's metrics.csv could be read.", ha="center", fontsize=11, color="#D55E00")
        return [fig]
    defenses = sorted({s.defense for s in summaries if s.defense != "none"}, key=defense_rank) or ["none"]
    grid = fig.add_gridspec(2, len(defenses), height_ratios=(1, 1.1))
    first = fig.add_subplot(grid[0, 0])
    for i, defense in enumerate(defenses):
        _rounds(first if i == 0 else fig.add_subplot(grid[0, i], sharey=first), defense, summaries, runs)
    _heatmap(fig.add_subplot(grid[1, :]), [s for s in summaries if s.label in runs], runs)
    return [fig]


def _first_run(setting: SettingSummary, rows: Sequence[dict[str, Any]]) -> RunFiles | None:
    for row in sorted(setting.rows(rows), key=lambda r: (r.get("seed") or 0, r.get("target_site") or 0)):
        run = read_run(row.get("run_path"))
        if run.metrics:
            return run
    return None


def pooled_curve(run: RunFiles) -> tuple[list[int], list[float]]:
    """(rounds, pooled Dice) from a run's metrics.csv."""
    points = sorted(
        (r["round"], r["dice"]) for r in run.metrics if r["site"] == "pooled" and r["dice"] is not None
    )
    return [p[0] for p in points], [p[1] for p in points]


def final_site_dice(run: RunFiles) -> dict[str, float]:
    """Dice per site (and ``pooled``) in the last round of metrics.csv."""
    last = max(r["round"] for r in run.metrics)
    return {r["site"]: r["dice"] for r in run.metrics if r["round"] == last and r["dice"] is not None}


def _rounds(ax: Axes, defense: str, summaries: Sequence[SettingSummary], runs: dict[str, RunFiles]) -> None:
    settings = sorted(
        (s for s in summaries if s.defense == defense and s.label in runs), key=lambda s: s.noise
    )
    reference = next((s for s in summaries if s.defense == "none" and s.label in runs), None)
    if reference and reference not in settings:
        x, y = pooled_curve(runs[reference.label])
        ax.plot(x, y, color="black", lw=1.6, marker="s", ms=3, label="no defense")
    cmap = colormaps[CMAP]
    for i, s in enumerate(settings):
        x, y = pooled_curve(runs[s.label])
        color = cmap(0.05 + 0.65 * i / max(len(settings) - 1, 1)) if s.defense != "none" else "black"
        ax.plot(
            x,
            y,
            color=color,
            lw=1.4,
            marker="o",
            ms=3,
            label="no defense" if s.defense == "none" else f"σ={fmt_noise(s.noise)}",
        )
    ax.set(xlabel="round", ylabel="pooled Dice", title=f"{defense}: pooled Dice per round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(loc="best", fontsize=8, frameon=False)


def _heatmap(ax: Axes, settings: Sequence[SettingSummary], runs: dict[str, RunFiles]) -> None:
    finals = {s.label: final_site_dice(runs[s.label]) for s in settings}
    sites = list(dict.fromkeys(site for s in settings for site in runs[s.label].sites()))
    values = np.array([[finals[s.label].get(site, np.nan) for site in sites] for s in settings], dtype=float)
    image = ax.imshow(values, cmap=CMAP, vmin=np.nanmin(values), vmax=np.nanmax(values), aspect="auto")
    ax.set_xticks(range(len(sites)), sites)
    ax.set_yticks(range(len(settings)), [s.label for s in settings])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    low, high = np.nanmin(values), np.nanmax(values)
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            dark = (value - low) / (high - low or 1.0) < 0.55
            ax.text(
                j, i, f"{value:.3f}", ha="center", va="center", fontsize=8, color="white" if dark else "black"
            )
    ax.set_title("Final-round Dice per site (held-out tiles)")
    ax.figure.colorbar(image, ax=ax, label="Dice", shrink=0.9)
