"""Privacy–utility curves: Dice vs ε, leakage vs σ and vs ε, and Dice vs leakage with its Pareto front.

The undefended run (σ = 0, ε = ∞) cannot sit on a log axis, so it is always drawn as a solid black
horizontal line; the prior guess is dashed and the mask-painted prior dotted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from feddp_eval import schema
from feddp_eval.schema import three_digits
from reports.style import LANDSCAPE, defense_color, defense_marker
from reports.summary import SettingSummary, defense_rank, level, stat

CURVE_METRICS = ("psnr", "ssim", "lpips", "mask_dice")  # leakage vs σ and vs ε, when measured
AUDIT = "epsilon_lower_bound"  # the one-run audit's ε̂, drawn beside ε when the runs were audited


def _axis_label(name: str) -> str:
    """``PSNR dB ↑ leaks more``: the schema's label and direction."""
    c = schema.column(name)
    return f"{c.label}{c.arrow} leaks more"


DODGE = 1.08  # multiplicative σ offset between the series of a leakage-vs-σ panel
LOG_SPAN = 20.0  # log axes only when the positive values span more than this factor


def curve_pages(
    summaries: Sequence[SettingSummary], rows: Sequence[dict[str, Any]], *, section: str = ""
) -> list[Figure]:
    """Two landscape pages: utility and leakage vs σ (with Dice vs PSNR, and ε beside the audit's ε̂
    when the runs were audited), then leakage vs ε.

    ``section`` (e.g. the threat model) prefixes the page titles.
    """
    metrics = {name: _axis_label(name) for name in CURVE_METRICS}
    present = [m for m in metrics if any(s.mean(m) is not None for s in summaries)]
    prefix = f"{section}: " if section else ""
    audited = any(s.mean(AUDIT) is not None for s in summaries)
    first = _grid_page(
        f"{prefix}Privacy–utility curves",
        "Utility vs ε, leakage vs noise σ (defenses offset slightly in σ for legibility), and the trade-off"
        + ("; the accountant's ε beside the one-run audit's lower bound ε̂." if audited else "."),
        2 + len(present) + audited,
    )
    fig, axes = first
    _dice_vs_epsilon(axes[0], summaries)
    if audited:
        _audit_vs_noise(axes[1], summaries)
    for ax, metric in zip(axes[1 + audited :], present, strict=False):
        _versus(ax, summaries, rows, metric, metrics[metric], x="noise")
    _dice_vs_psnr(axes[-1], summaries, rows)
    _legend(fig, axes)
    pages = [fig]
    defended = [s for s in summaries if s.defense != "none" and _finite(s.epsilon)]
    if defended and present:
        fig2, axes2 = _grid_page(
            f"{prefix}Privacy–utility curves (leakage vs ε)",
            "Lower ε = stronger guarantee; compare ε only at equal granularity.",
            len(present),
        )
        for ax, metric in zip(axes2, present, strict=False):
            _versus(ax, summaries, rows, metric, metrics[metric], x="epsilon")
        _legend(fig2, axes2)
        pages.append(fig2)
    return pages


def _grid_page(title: str, subtitle: str, panels: int) -> tuple[Figure, list[Axes]]:
    from reports.style import new_page

    fig = new_page(LANDSCAPE)
    fig.set_layout_engine("constrained", rect=(0.02, 0.03, 0.96, 0.88), h_pad=0.15, w_pad=0.15)
    fig.suptitle(title, x=0.05, y=0.975, ha="left", fontsize=15, weight="bold")
    fig.text(0.05, 0.935, subtitle, fontsize=9, color="#333333")
    cols = 3 if panels > 4 else 2
    rows = math.ceil(panels / cols)
    grid = fig.subplots(rows, cols, squeeze=False)
    axes = list(grid.ravel())
    for extra in axes[panels:]:
        extra.remove()
    return fig, axes[:panels]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0


def _series(summaries: Sequence[SettingSummary]) -> dict[str, list[SettingSummary]]:
    """Defended settings by defense (and attack, when several ran), sorted by noise."""
    several = len({s.attack for s in summaries}) > 1
    out: dict[str, list[SettingSummary]] = {}
    for s in sorted(summaries, key=lambda s: (defense_rank(s.defense), s.attack, s.noise)):
        if s.defense != "none":
            out.setdefault(f"{s.defense} · {s.attack}" if several else s.defense, []).append(s)
    return out


def _linestyle(setting: SettingSummary, summaries: Sequence[SettingSummary]) -> str:
    """Solid for the first attack, then dashed and dotted: series of one defense differ by attack."""
    attacks = list(dict.fromkeys(s.attack for s in summaries))
    return ("-", "--", ":", "-.")[attacks.index(setting.attack) % 4]


def _label(name: str, settings: Sequence[SettingSummary]) -> str:
    levels = {g for s in settings if (g := level(s.granularity))}
    return f"{name} ({'/'.join(sorted(levels))}-level ε)" if levels else name


def _scale(ax: Axes, values: Sequence[float]) -> None:
    """Log x when the values span more than :data:`LOG_SPAN`; a single value gets a single plain tick."""
    positive = sorted({v for v in values if _finite(v)})
    if len(positive) == 1:
        ax.set_xticks(positive, [three_digits(positive[0])])
    elif positive and positive[-1] / positive[0] > LOG_SPAN:
        ax.set_xscale("log")


def _reference(ax: Axes, summaries: Sequence[SettingSummary], metric: str) -> None:
    """The undefended value as a solid black line."""
    for s in summaries:
        value = s.mean(metric)
        if s.defense == "none" and value is not None:
            ax.axhline(value, color="black", lw=1.2, label="no defense (σ = 0, ε = ∞)")
            return


def _priors(ax: Axes, rows: Sequence[dict[str, Any]], metric: str, *, vertical: bool = False) -> None:
    line = ax.axvline if vertical else ax.axhline
    prior = stat(r.get(f"prior_{metric}") for r in rows).mean
    if prior is not None:
        line(prior, color="#555555", ls="--", lw=1.0, label="prior guess (before the update)")
    painted = stat(r.get(f"mask_prior_{metric}") for r in rows).mean
    if painted is not None:
        line(painted, color="#555555", ls=":", lw=1.3, label="mask-painted prior (masks known)")


def _errorbar(
    ax: Axes,
    x: Sequence[float],
    settings: Sequence[SettingSummary],
    metric: str,
    label: str,
    *,
    ls: str = "-",
) -> None:
    points = [(xi, s.stats[metric]) for xi, s in zip(x, settings, strict=True) if _finite(xi)]
    points = [(xi, value) for xi, value in points if value.mean is not None]
    if not points:
        return
    sd = [value.sd or 0.0 for _, value in points]
    defense = settings[0].defense
    ax.errorbar(
        [xi for xi, _ in points],
        [float(value.mean or 0.0) for _, value in points],
        yerr=sd if any(sd) else None,
        color=defense_color(defense),
        marker=defense_marker(defense),
        ms=5,
        lw=1.5,
        ls=ls,
        capsize=2.5,
        label=label,
    )


def _dice_vs_epsilon(ax: Axes, summaries: Sequence[SettingSummary]) -> None:
    xs: list[float] = []
    for series, settings in _series(summaries).items():
        x = [s.epsilon if s.epsilon is not None else math.nan for s in settings]
        _errorbar(ax, x, settings, "dice", _label(series, settings), ls=_linestyle(settings[0], summaries))
        xs += [v for v in x if _finite(v)]
    _reference(ax, summaries, "dice")
    _scale(ax, xs)
    ax.set(xlabel="ε (privacy budget at δ)", ylabel="Dice (pooled, final round)", title="Utility vs ε")
    if not xs:
        ax.text(0.5, 0.5, "no finite ε recorded", transform=ax.transAxes, ha="center", color="#555555")


def _audit_vs_noise(ax: Axes, summaries: Sequence[SettingSummary]) -> None:
    """Per defense, the accountant's ε (solid) and the audit's ε̂ (dashed, hollow) against σ; the
    undefended runs' ε̂ (ε = ∞) as a dotted black line. ε̂ above ε would be a DP bug."""
    xs: list[float] = []
    ys: list[float] = []
    for series, settings in _series(summaries).items():
        color, marker = defense_color(settings[0].defense), defense_marker(settings[0].defense)
        for values, ls, face, what in (
            ([(s.noise, s.epsilon) for s in settings], "-", color, "ε (accountant)"),
            ([(s.noise, s.mean(AUDIT)) for s in settings], "--", "none", "ε̂ (audit)"),
        ):
            points = [(x, y) for x, y in values if _finite(x) and y is not None and math.isfinite(y)]
            if points:
                x, y = zip(*points, strict=True)
                ax.plot(x, y, color=color, marker=marker, ms=5, ls=ls, mfc=face, label=f"{series} {what}")
                xs += x
                ys += y
    for s in summaries:
        if s.defense == "none" and (value := s.mean(AUDIT)) is not None:
            ax.axhline(value, color="black", ls=":", lw=1.2, label="no defense ε̂ (ε = ∞)")
            ys.append(value)
    _scale(ax, xs)
    positive = [y for y in ys if y > 0]
    if positive and max(positive) / min(positive) > LOG_SPAN:
        ax.set_yscale("symlog", linthresh=min(positive))
    ax.set(xlabel="noise multiplier σ", ylabel="ε at δ (ε̂: 95% lower bound)", title="ε vs the audit's ε̂")


def _versus(
    ax: Axes,
    summaries: Sequence[SettingSummary],
    rows: Sequence[dict[str, Any]],
    metric: str,
    name: str,
    *,
    x: str,
) -> None:
    xs: list[float] = []
    series = _series(summaries)
    for i, (name_, settings) in enumerate(series.items()):
        values = [float(getattr(s, x)) if getattr(s, x) is not None else math.nan for s in settings]
        xs += [v for v in values if _finite(v)]
        if x == "noise":  # equal σ across defenses: offset each series a little so error bars stay apart
            values = [v * DODGE ** (i - (len(series) - 1) / 2) for v in values]
        _errorbar(
            ax, values, settings, metric, _label(name_, settings), ls=_linestyle(settings[0], summaries)
        )
    _reference(ax, summaries, metric)
    _priors(ax, rows, metric)
    _scale(ax, xs)
    short = name.split(" ↑")[0].split(" ↓")[0]
    xlabel = "noise multiplier σ" if x == "noise" else "ε (privacy budget at δ)"
    ax.set(xlabel=xlabel, ylabel=name, title=f"{short} vs {'σ' if x == 'noise' else 'ε'}")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (psnr, dice) not dominated by any other (lower PSNR and higher Dice are better), by PSNR."""
    front: list[tuple[float, float]] = []
    for psnr, dice in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or dice > front[-1][1]:
            front.append((psnr, dice))
    return front


def _dice_vs_psnr(ax: Axes, summaries: Sequence[SettingSummary], rows: Sequence[dict[str, Any]]) -> None:
    points = []
    for s in sorted(summaries, key=lambda s: (defense_rank(s.defense), s.noise)):
        psnr, dice = s.mean("psnr"), s.mean("dice")
        if psnr is None or dice is None:
            continue
        points.append((psnr, dice))
        ax.plot(
            psnr,
            dice,
            ls="none",
            marker=defense_marker(s.defense),
            ms=6,
            color=defense_color(s.defense),
            mec="white",
            mew=0.5,
        )
    for settings in _series(summaries).values():
        xy = np.array(
            [(s.mean("psnr"), s.mean("dice")) for s in settings if s.mean("psnr") is not None], dtype=float
        )
        if len(xy):
            ax.plot(xy[:, 0], xy[:, 1], color=defense_color(settings[0].defense), lw=0.8, alpha=0.5)
    front = pareto_front(points)
    if front:
        fx, fy = zip(*front, strict=True)
        ax.step(fx, fy, where="post", color="#CC79A7", lw=1.6, label="Pareto front (max Dice, min PSNR)")
        ax.plot(fx, fy, ls="none", marker="o", ms=11, mfc="none", mec="#CC79A7", mew=1.4)
    _priors(ax, rows, "psnr", vertical=True)
    ax.set(xlabel="PSNR (dB) of the reconstruction ↑ leaks more", ylabel="Dice", title="Utility vs leakage")


def _legend(fig: Figure, axes: Sequence[Axes]) -> None:
    """One legend for the page, below the panels, so no entry covers data."""
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(labels)), frameon=False)
