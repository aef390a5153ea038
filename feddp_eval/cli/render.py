"""What the commands print: progress bars on stderr, result tables on stdout (rich).

Labels, units, arrows and number formats come from :mod:`feddp_eval.schema`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from statistics import mean
from typing import TYPE_CHECKING, Any

from feddp_eval import schema

if TYPE_CHECKING:
    from feddp_eval.workflows.train import TrainResult

MISSING = schema.MISSING


@contextmanager
def round_progress(total: int, quiet: bool) -> Iterator[Callable[[Any], None] | None]:
    """A progress bar over rounds on stderr showing the pooled held-out Dice."""
    if quiet:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rounds"),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task("train", total=total, status="")

        def on_round(record: Any) -> None:
            pooled = record.pooled  # empty in a round that was not evaluated (`train.evaluate = "final"`)
            status = f"held-out Dice {pooled['dice']:.3f}" if pooled else ""
            progress.update(task, advance=1, status=status)

        yield on_round


@contextmanager
def attack_progress(quiet: bool) -> Iterator[tuple[Any, Any]]:
    """A bar per stage (training, attacking) with the attack's best objective."""
    if quiet:
        yield None, None
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        state: dict[str, Any] = {"task": None}

        def on_stage(description: str) -> None:
            # Stage text is plain: "[dp-sgd σ=1.1]" would otherwise be read as a rich markup tag and vanish.
            state["task"] = progress.add_task(escape(description), total=None, status="")

        def on_iteration(iteration: int, total: int, best: float) -> None:
            status = f"objective {best:.4f}" if best == best else ""  # NaN: no objective (analytic, fitted)
            progress.update(state["task"], completed=iteration, total=total, status=status)

        yield on_stage, on_iteration


@contextmanager
def sweep_progress(quiet: bool) -> Iterator[dict[str, Any]]:
    """Points done of the grid, the current point's stage, and time left."""
    if quiet:
        yield {}
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("[bold]sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("points"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[stage]}"),
    )
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("sweep", total=None, stage="")

        def on_start(done: int, total: int) -> None:
            progress.update(task, total=total, completed=done, stage="resuming" if done else "")

        def on_stage(description: str) -> None:
            progress.update(task, stage=escape(description))

        def on_point(label: str) -> None:
            progress.update(task, advance=1, stage=escape(f"done: {label}"))

        yield {"on_start": on_start, "on_stage": on_stage, "on_point": on_point}


def print_train_summary(result: TrainResult) -> None:
    from rich.console import Console
    from rich.table import Table

    summary = result.summary
    utility = schema.columns(kind=["utility"])
    table = Table(title=f"Held-out utility after round {summary.rounds}")
    table.add_column("site")
    for c in utility:
        table.add_column(c.label, justify="right")
    otsu = summary.otsu
    for site, scores in summary.sites.items():
        table.add_row(
            site, *(c.format(scores[c.name]) for c in utility), style="bold" if site == "pooled" else None
        )
    if "pooled" in otsu:
        table.add_row("Otsu (no model)", *(c.format(otsu["pooled"][c.name]) for c in utility), style="dim")
    console = Console()
    console.print(table)
    text = schema.privacy_text(summary.epsilon, summary.delta, summary.granularity, summary.accountant)
    console.print(f"defense: {summary.defense_name}; privacy: {text}")
    if (audit := summary.audit) is not None:
        console.print(f"audit: {audit['text']}")
    for note in summary.warnings:
        console.print(f"[yellow]warning: {note}[/yellow]")
    reused = " (reused: this config had already finished there)" if result.reused else ""
    console.print(f"run directory: {result.run_dir}{reused}")


def print_not_run(console: Any, rows: list[dict[str, Any]]) -> None:
    """A red line per row whose attack could not run (its leakage cells are empty, not the prior's)."""
    from feddp_eval.schema import not_run_reason

    for row in rows:
        if (reason := not_run_reason(row)) is not None:
            label = schema.setting_label(row["defense"], row["noise"])
            console.print(f"[red]attack not run on {label}: {reason}[/red]")


def print_check_table(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Leakage gate ({result.source})")
    for column in ("arm", "metric", "bound", "value", "margin", ""):
        table.add_column(column, justify="left" if column in ("arm", "metric", "") else "right")
    for v in result.verdicts:
        sign = ">=" if v.bound.kind == "min" else "<="
        table.add_row(
            v.bound.arm,
            v.bound.metric,
            f"{sign} {v.bound.value:g}",
            MISSING if v.value is None else f"{v.value:.4g}",
            MISSING if v.margin is None else f"{v.margin:+.4g}",
            "[green]pass[/green]" if v.passed else "[red]FAIL[/red]",
        )
    console = Console()
    console.print(table)
    for row in result.rows:
        if (text := delta_dice_label(row)) is not None:
            label = schema.setting_label(row["defense"], row["noise"])
            console.print(f"ΔDice {label} ({row.get('attack')}): {text}")


def delta_dice_label(row: dict[str, Any]) -> str | None:
    """``-5.60% [-8.10%, -3.00%] lower`` from a row's ΔDice cells (3 seeds); ``None`` on the reference."""
    from feddp_eval.metrics.significance import PairedDelta

    if row.get("delta_dice") is None:
        return None
    seeds = int(row.get("utility_seeds") or 1)
    delta = PairedDelta(
        seeds,
        row["delta_dice"],
        row.get("delta_dice_low"),
        row.get("delta_dice_high"),
        None,
        0.95,
        row.get("delta_dice_verdict") or "cannot tell",
    )
    return f"{delta.label()} over {seeds} paired seed(s)"


def sweep_tables(result: Any) -> list[Any]:
    """One table per attack (honest server first, then malicious), one line per (defense, σ) and, in a
    sweep over them, per local batch size and local steps: means over seeds and targets."""
    rows = result.rows
    attacks = sorted(
        {row.get("attack") or "?" for row in rows},
        key=lambda a: (any(r.get("threat") == "malicious" for r in rows if r.get("attack") == a), a),
    )
    return [_sweep_attack_table([r for r in rows if (r.get("attack") or "?") == a], a) for a in attacks]


SWEEP_COLUMNS = (
    "dice",
    "psnr",
    "ssim",
    "prior_psnr",
    "mask_prior_psnr",
    "margin_psnr",
    "tiles_beating_prior",
)


def _sweep_attack_table(mine: list[dict[str, Any]], attack: str) -> Any:
    from rich.table import Table

    axes = _varied_training(mine)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in mine:
        groups.setdefault((row["defense"], float(row["noise"]), *(row.get(a) for a in axes)), []).append(row)
    painted = any(r.get("mask_prior_psnr") is not None for r in mine)
    columns = [schema.column(n) for n in SWEEP_COLUMNS if painted or n != "mask_prior_psnr"]
    threat = "malicious server" if any(r.get("threat") == "malicious" for r in mine) else "honest server"
    table = Table(title=f"{attack} ({threat}): {len(mine)} rows; means over seeds and targets")
    audited = (
        [schema.column("epsilon_lower_bound")]
        if any(r.get("epsilon_lower_bound") is not None for r in mine)
        else []
    )
    training = [schema.column(a).label for a in axes]
    for header in ("defense", "σ", *training, "ε", *(c.label for c in [*audited, *columns]), "ΔDice"):
        table.add_column(header, justify="left" if header == "defense" else "right")
    changes = _dice_changes(mine, axes)
    for key, rows in groups.items():
        name, noise, *cell = key
        epsilons = [r["epsilon"] for r in rows if r.get("epsilon") is not None]
        cells = [_mean_cell(c, _mean(rows, c.name)) for c in [*audited, *columns]]
        epsilon = schema.format_epsilon(mean(epsilons) if epsilons else None)
        table.add_row(name, f"{noise:g}", *map(str, cell), epsilon, *cells, changes.get(key, MISSING))
    return table


def _varied_training(rows: list[dict[str, Any]]) -> list[str]:
    """The training settings (:func:`feddp_eval.schema.swept_columns`) that differ among ``rows``."""
    return [name for name in schema.swept_columns() if len({r.get(name) for r in rows}) > 1]


def _dice_changes(rows: list[dict[str, Any]], axes: list[str]) -> dict[tuple[Any, ...], str]:
    """ΔDice of each setting against the undefended one trained at the same ``axes`` values (batch size,
    local steps), flagged when within seed noise; keyed by (defense, σ, *those values)."""
    import defenses  # noqa: F401  # the summary orders the defenses as each declares (feddp_eval.plugins)
    from reports.summary import fmt_dice_change, summarize

    cells: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault(tuple(row.get(a) for a in axes), []).append(row)
    return {
        (s.defense, s.noise, *cell): fmt_dice_change(s)
        for cell, mine in cells.items()
        for s in summarize(mine)
    }


def _mean_cell(column: schema.Column, value: float | None) -> str:
    """A mean in the column's format; a mean count gets one decimal."""
    return f"{value:.1f}" if column.type == "int" and value is not None else column.format(value)


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return mean(values) if values else None
