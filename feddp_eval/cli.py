"""The ``feddp-eval`` command line: typer wiring only.

Heavy imports (torch, the pipeline) happen inside commands so ``--help`` is
instant. A :class:`~feddp_eval.errors.FeddpError` becomes one red line on stderr
and its exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from feddp_eval.errors import FeddpError

app = typer.Typer(
    name="feddp-eval",
    help="Measure how much private data leaks from federated histopathology segmentation, "
    "and how much differential privacy stops it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
list_app = typer.Typer(help="List the registered plugins.", no_args_is_help=True)
app.add_typer(list_app, name="list")

T = TypeVar("T")


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class AccountantChoice(str, Enum):
    rdp = "rdp"
    prv = "prv"


class OptimizerChoice(str, Enum):
    sgd = "sgd"
    adam = "adam"


def _fail(message: str, code: int) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Turn user mistakes into one red line and the error's exit code."""
    try:
        yield
    except FeddpError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    except OSError as exc:  # the machine, not the code: a full disk, a read-only or vanished folder
        where = f"{exc.filename}: " if exc.filename else ""
        raise _fail(f"{where}{exc.strerror or exc}; check that location and try again", 2) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None


def _emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Experiment TOML file; flags given here override its values.",
        exists=False,
        dir_okay=True,  # a folder is refused by read_toml in one line, not a usage box
    ),
]
SeedOpt = Annotated[int | None, typer.Option(help="Experiment seed; every random draw derives from it.")]
DeviceOpt = Annotated[
    DeviceChoice | None, typer.Option(help="Where to compute: auto picks CUDA when present.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")]
DataOpt = Annotated[
    Path | None,
    typer.Option(
        help="Real data folder (images/ + masks/, or one such sub-folder per site). "
        "Default: the embedded synthetic H&E sites."
    ),
]
DefenseOpt = Annotated[
    str | None,
    typer.Option(
        help="Defense: none, dp-sgd, local-dp, central-dp, prune (see `feddp-eval list defenses`). "
        "Default: dp-sgd when --noise > 0, else none. central-dp protects the aggregate and the final model, "
        "NOT the updates the server receives."
    ),
]
NoiseOpt = Annotated[float | None, typer.Option(help="Noise multiplier σ of the chosen defense.")]
ClipOpt = Annotated[
    float | None,
    typer.Option(help="Clipping bound C: per sample (dp-sgd) or per update (local-dp, central-dp)."),
]
DeltaOpt = Annotated[float | None, typer.Option(help="δ at which ε is reported.")]
AccountantOpt = Annotated[AccountantChoice | None, typer.Option(help="Privacy accountant.")]
TargetEpsOpt = Annotated[
    float | None,
    typer.Option(help="Calibrate σ so the whole planned run spends this ε (instead of --noise)."),
]
PruneOpt = Annotated[float | None, typer.Option(help="prune: share of update coordinates set to zero.")]


def _defense_overrides(
    defense: str | None,
    noise: float | None,
    clip: float | None,
    delta: float | None,
    accountant: AccountantChoice | None,
    target_epsilon: float | None,
    prune_ratio: float | None,
    base_defense: str,
) -> dict[str, Any]:
    """Dotted overrides for [defense]; ``--noise`` > 0 without a defense anywhere means dp-sgd."""
    if defense is None and base_defense == "none" and ((noise or 0) > 0 or target_epsilon is not None):
        defense = "dp-sgd"
    return {
        "defense.name": defense,
        "defense.noise": noise,
        "defense.clip": clip,
        "defense.delta": delta,
        "defense.accountant": accountant.value if accountant else None,
        "defense.target_epsilon": target_epsilon,
        "defense.prune_ratio": prune_ratio,
    }


@app.command()
def train(
    config: ConfigOpt = None,
    rounds: Annotated[int | None, typer.Option(help="Federated rounds.")] = None,
    sites: Annotated[int | None, typer.Option(help="Number of sites (institutions).")] = None,
    local_epochs: Annotated[
        int | None, typer.Option(help="Local passes over each site's data per round.")
    ] = None,
    local_steps: Annotated[
        int | None, typer.Option(help="Fixed local steps per round (0: use epochs).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Local batch size.")] = None,
    lr: Annotated[float | None, typer.Option(help="Local learning rate.")] = None,
    optimizer: Annotated[OptimizerChoice | None, typer.Option(help="Local optimizer.")] = None,
    client_fraction: Annotated[float | None, typer.Option(help="Share of sites sampled per round.")] = None,
    tile_size: Annotated[int | None, typer.Option(help="Tile edge in pixels.")] = None,
    data: DataOpt = None,
    defense: DefenseOpt = None,
    noise: NoiseOpt = None,
    clip: ClipOpt = None,
    delta: DeltaOpt = None,
    accountant: AccountantOpt = None,
    target_epsilon: TargetEpsOpt = None,
    prune_ratio: PruneOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    out: Annotated[Path | None, typer.Option(help="Run directory. Default: runs/<config hash>.")] = None,
    force: Annotated[
        bool, typer.Option(help="Retrain even if OUT holds a finished run of this config.")
    ] = False,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train FedAvg U-Net segmentation across sites, behind a defense, and capture every client update.

    The run directory receives the resolved config, a manifest, per-round
    per-site metrics (metrics.csv), the captured updates (captures/, safetensors
    + JSON), the sites' ground truth kept apart (ground_truth/), and the final
    global model (model.safetensors).
    """
    with _user_errors():
        experiment = _experiment(
            config,
            {
                "seed": seed,
                "device": device.value if device else None,
                "data.source": str(data) if data else None,
                "data.sites": sites,
                "data.tile_size": tile_size,
                "train.rounds": rounds,
                "train.local_epochs": local_epochs,
                "train.local_steps": local_steps,
                "train.batch_size": batch_size,
                "train.lr": lr,
                "train.optimizer": optimizer.value if optimizer else None,
                "train.client_fraction": client_fraction,
            },
            lambda base: _defense_overrides(
                defense, noise, clip, delta, accountant, target_epsilon, prune_ratio, base.defense.name
            ),
        )
        from feddp_eval.pipeline import run_train

        with _round_progress(experiment.train.rounds, quiet) as on_round:
            result = run_train(experiment, run_dir=out, force=force, on_round=on_round)
    if json_output:
        _emit_json(result.summary)
    elif not quiet:
        _print_train_summary(result)


def _experiment(
    config: Path | None, overrides: dict[str, Any], more: Callable[[Any], dict[str, Any]] | None = None
) -> Any:
    """The config file (or defaults) with flag overrides; ``more`` derives overrides from the base."""
    from feddp_eval.config import ExperimentConfig, load_config, validate, with_overrides

    base = load_config(config) if config else validate(ExperimentConfig())
    return with_overrides(base, {**overrides, **(more(base) if more else {})})


@contextmanager
def _round_progress(total: int, quiet: bool) -> Iterator[Callable[[Any], None] | None]:
    """A progress bar over rounds on stderr showing the pooled held-out Dice."""
    if quiet:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    columns = (
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rounds"),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("train", total=total, status="")

        def on_round(record: Any) -> None:
            progress.update(task, advance=1, status=f"held-out Dice {record.pooled['dice']:.3f}")

        yield on_round


def _print_train_summary(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    summary = result.summary
    table = Table(title=f"Held-out utility after round {summary['rounds']}")
    for column in ("site", "Dice", "Jaccard", "pixel acc."):
        table.add_column(column, justify="left" if column == "site" else "right")
    for site, scores in summary["sites"].items():
        table.add_row(
            site,
            *(f"{scores[k]:.3f}" for k in ("dice", "jaccard", "accuracy")),
            style="bold" if site == "pooled" else None,
        )
    console = Console()
    console.print(table)
    from feddp_eval.federated.hooks import format_epsilon

    console.print(f"defense: {summary['defense']['name']}; privacy: {format_epsilon(summary['privacy'])}")
    for note in summary.get("warnings", []):
        console.print(f"[yellow]warning: {note}[/yellow]")
    reused = " (reused: this config had already finished there)" if result.reused else ""
    console.print(f"run directory: {result.run_dir}{reused}")


class MaskChoice(str, Enum):
    known = "known"
    unknown = "unknown"


class BudgetChoice(str, Enum):
    quick = "quick"
    standard = "standard"
    thorough = "thorough"


TargetRoundOpt = Annotated[
    str | None,
    typer.Option(
        help="Round whose update is attacked, or 'all': every round the site took part in, inverted "
        "jointly (multi-round honest server)."
    ),
]
RoundsUsedOpt = Annotated[
    int | None,
    typer.Option(help="With --target-round all: invert only the first N rounds the site took part in."),
]
BudgetOpt = Annotated[
    BudgetChoice | None,
    typer.Option(
        help="Attack budget: quick (500 iterations, default), standard (2,000), thorough (4,000 x 2 "
        "restarts); --iterations/--restarts win over it."
    ),
]


def _target_round(text: str | None) -> int | str | None:
    """``--target-round``: a round number or ``all``; anything else is a config error."""
    from feddp_eval.errors import ConfigError

    if text is None or text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--target-round takes a round number or 'all', but got {text!r}") from None


@app.command()
def attack(
    noise: Annotated[
        float | None,
        typer.Option(
            help="Noise multiplier σ of the defended arm (default 1.1 unless the config names a defense)."
        ),
    ] = None,
    defense: DefenseOpt = None,
    config: ConfigOpt = None,
    attack_name: Annotated[
        str | None,
        typer.Option(
            "--attack",
            help="Attack: inverting-gradients (default), dlg, or imprint (a malicious server that sends "
            "the target an imprinted model; its own training run); see `feddp-eval list attacks`.",
        ),
    ] = None,
    target_site: Annotated[
        int | None, typer.Option(help="Site whose update is attacked (default: the smallest site).")
    ] = None,
    target_round: TargetRoundOpt = None,
    rounds_used: RoundsUsedOpt = None,
    budget: BudgetOpt = None,
    iterations: Annotated[int | None, typer.Option(help="Attack iterations per restart.")] = None,
    restarts: Annotated[int | None, typer.Option(help="Attack restarts (one batched optimisation).")] = None,
    mask: Annotated[
        MaskChoice | None,
        typer.Option(
            help="known: the attacker has the true masks (worst case, default); unknown: recovered jointly."
        ),
    ] = None,
    reference: Annotated[bool, typer.Option(help="Also train and attack the undefended arm.")] = True,
    rounds: Annotated[int | None, typer.Option(help="Federated rounds of both training runs.")] = None,
    data: DataOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    out: Annotated[Path, typer.Option(help="Folder for training runs and attack results.")] = Path("runs"),
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train with and without DP, invert the same client's update in both, and compare leakage.

    Default scenario: the smallest site (a handful of tiles, one local step) in round 1, attacked by
    Inverting Gradients with an H&E stain prior; the attacker knows the masks (worst case).
    Training runs are reused when their config is unchanged.
    """
    with _user_errors():
        experiment = _experiment(
            config,
            {
                "seed": seed,
                "device": device.value if device else None,
                "train.rounds": rounds,
                "data.source": str(data) if data else None,
                "attack.name": attack_name,
                "attack.target_site": target_site,
                "attack.target_round": _target_round(target_round),
                "attack.rounds_used": rounds_used,
                "attack.budget": budget.value if budget else None,
                "attack.iterations": iterations,
                "attack.restarts": restarts,
                "attack.mask": mask.value if mask else None,
            },
        )
        from feddp_eval.pipeline import defended_config, run_attack

        if noise is None and defense is None and experiment.defense.name == "none":
            noise = 1.1
        experiment = defended_config(experiment, noise=noise, defense=defense)
        with _attack_progress(quiet) as (on_stage, on_iteration):
            result = run_attack(
                experiment, out=out, reference=reference, on_stage=on_stage, on_iteration=on_iteration
            )
    if json_output:
        _emit_json(result.to_json())
    elif not quiet:
        _print_attack_table(result)


@contextmanager
def _attack_progress(quiet: bool) -> Iterator[tuple[Any, Any]]:
    if quiet:
        yield None, None
        return
    from rich.console import Console
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
            state["task"] = progress.add_task(description, total=None, status="")

        def on_iteration(iteration: int, total: int, best: float) -> None:
            status = f"objective {best:.4f}" if best == best else "analytic"  # NaN: no objective
            progress.update(state["task"], completed=iteration, total=total, status=status)

        yield on_stage, on_iteration


def _rounds_text(scenario: dict[str, Any]) -> str:
    """``round 1``, or ``rounds 1–10 (10 inverted jointly)`` for a multi-round attack."""
    rounds = scenario.get("rounds") or [scenario["round"]]
    if len(rounds) == 1:
        return f"round {rounds[0]}"
    return f"rounds {rounds[0]}–{rounds[-1]} ({len(rounds)} inverted jointly)"


def _print_attack_table(result: Any) -> None:
    """One column per arm and per prior guess, one row per quantity: fits an 80-column terminal."""
    from rich.console import Console
    from rich.table import Table

    from feddp_eval.federated.hooks import format_epsilon

    def fmt(value: Any, digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    s = result.scenario
    rows, first = result.rows, result.rows[0]
    table = Table(
        title=f"{s['site']}, {_rounds_text(s)}: {s['tiles']} tiles, {s['local_steps']} local step(s)"
    )
    table.add_column("")
    for row in rows:
        table.add_column(
            row["defense"] if row["defense"] == "none" else f"{row['defense']}\nσ={row['noise']:g}",
            justify="right",
        )
    priors = [("prior\nmean colour", "prior")]
    if first.get("mask_prior_psnr") is not None:
        priors.append(("prior\npainted mask", "mask_prior"))
    for title, _ in priors:
        table.add_column(title, justify="right", style="dim")

    def line(label: str, key: str, digits: int = 3, prior: bool = True) -> None:
        values = [fmt(r[key], digits) for r in rows]
        values += [fmt(first.get(f"{p}_{key}"), digits) if prior else "" for _, p in priors]
        table.add_row(label, *values)

    table.add_row(
        "ε (δ)",
        *["–" if r["epsilon"] is None else f"{r['epsilon']:.3g} ({r['delta']:g})" for r in rows],
        *["" for _ in priors],
    )
    line("Dice", "dice", prior=False)
    line("Jaccard", "jaccard", prior=False)
    line("pixel acc.", "accuracy", prior=False)
    line("PSNR dB ↑", "psnr", 1)
    line("SSIM ↑", "ssim")
    line("LPIPS ↓", "lpips")
    line("mask Dice ↑", "mask_dice")
    tiles = s["tiles"]
    table.add_row(
        "vs prior dB",
        *["–" if r.get("margin_psnr") is None else f"{r['margin_psnr']:+.1f}" for r in rows],
        *["" for _ in priors],
    )
    table.add_row(
        "tiles > prior",
        *[
            f"{r['tiles_beating_prior']}/{tiles}" if r.get("tiles_beating_prior") is not None else "–"
            for r in rows
        ],
        *["" for _ in priors],
    )
    malicious = first.get("threat") == "malicious"
    if malicious:
        table.add_row(
            "tiles read",
            *[f"{r.get('tiles_read')} ({r.get('tiles_alone')} alone)" for r in rows],
            *["" for _ in priors],
        )
    console = Console()
    console.print(table)
    _print_not_run(console, rows)
    for row in rows:
        console.print(f"{row['defense']} (σ = {row['noise']:g}): {format_epsilon(row)}")
    console.print(
        "↑/↓: more leakage. Priors use no update: the site's public mean colour; with the masks "
        "known, the masks painted in the site's public nuclei and background colours."
    )
    reference = "painted-mask" if first.get("prior_kind") == "painted-mask" else "mean-colour"
    console.print(
        f"vs prior: mean PSNR minus the {reference} prior's (the attacker's best guess without the "
        f"update); tiles > prior: tiles whose PSNR beats that guess of the same tile"
    )
    if malicious:
        console.print(
            "tiles read: tiles the imprint found in a bin of their own (in brackets: how many truly "
            "were alone); the rest are filled with the mean colour. Imprint recovers no mask."
        )
    elif first["mask_dice"] is None:
        console.print("mask Dice: –, the attacker was given the true masks")
    console.print(f"threat: {s['threat']}")
    if first.get("lpips_missing"):
        console.print(f"[yellow]LPIPS missing: {first['lpips_missing']}[/yellow]")
    console.print(f"reconstructions: {result.grid}")


def _print_not_run(console: Any, rows: list[dict[str, Any]]) -> None:
    """A red line per row whose attack could not run (its leakage cells are empty, not the prior's)."""
    from feddp_eval.safety import not_run_reason

    for row in rows:
        if (reason := not_run_reason(row)) is not None:
            console.print(f"[red]attack not run on {row['defense']} σ={row['noise']:g}: {reason}[/red]")


def _numbers(text: str | None, kind: type, option: str) -> tuple[Any, ...] | None:
    """``"0,0.01,1.1"`` → ``(0.0, 0.01, 1.1)``; a bad item is a config error naming the option."""
    from feddp_eval.errors import ConfigError

    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        return tuple(kind(item) for item in items)
    except ValueError:
        raise ConfigError(
            f"{option} takes a comma-separated list of {kind.__name__}s, but got {text!r}"
        ) from None


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(item.strip() for item in text.split(",") if item.strip())


@app.command()
def sweep(
    noise: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated noise multipliers σ. Default: 0,0.001,0.003,0.01,0.03,0.1,0.3,1.1,2 "
            "(leakage collapses decades below 1.1). σ = 0 (no defense) is always included."
        ),
    ] = None,
    defense: Annotated[
        str | None,
        typer.Option(help="Comma-separated defenses to sweep: dp-sgd (default), local-dp, central-dp."),
    ] = None,
    attack_name: Annotated[
        str | None,
        typer.Option(
            "--attack",
            help="Comma-separated attacks: inverting-gradients (default), dlg, imprint (malicious "
            "server: trains its own runs; reported apart from the honest-server attacks).",
        ),
    ] = None,
    seeds: Annotated[
        int | None, typer.Option(help="Seeds per point: the experiment seed, seed+1, ...")
    ] = None,
    targets: Annotated[
        str | None,
        typer.Option(help="Comma-separated site indices whose update is attacked (-1: the smallest site)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Experiment TOML; an optional \\[sweep] table sets noises, defenses, attacks, seeds, "
            "targets. Flags override it.",
            dir_okay=True,  # refused by read_toml in one line
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Sweep folder (resumable: rerun the same command).")] = Path(
        "runs/sweep"
    ),
    jobs: Annotated[int, typer.Option(min=1, help="Points run in parallel processes.")] = 1,
    rounds: Annotated[int | None, typer.Option(help="Federated rounds of every training run.")] = None,
    iterations: Annotated[int | None, typer.Option(help="Attack iterations per restart.")] = None,
    budget: BudgetOpt = None,
    target_round: TargetRoundOpt = None,
    rounds_used: RoundsUsedOpt = None,
    mask: Annotated[
        MaskChoice | None,
        typer.Option(
            help="known: the attacker has the true masks (worst case, default); unknown: recovered."
        ),
    ] = None,
    clip: ClipOpt = None,
    delta: DeltaOpt = None,
    accountant: AccountantOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Privacy–utility sweep: train → capture → attack → score at every noise level, defense and seed.

    Each point is keyed by its config hash: finished points are never recomputed, so an interrupted
    sweep resumes where it stopped and ends with the same results.csv. Then render the comparison
    report with `feddp-eval report OUT -o report.pdf`.
    """
    with _user_errors():
        from feddp_eval.config import ExperimentConfig, validate, with_overrides
        from feddp_eval.sweep import SweepSpec, load_sweep_config

        base, spec = load_sweep_config(config) if config else (validate(ExperimentConfig()), SweepSpec())
        base = with_overrides(
            base,
            {
                "seed": seed,
                "device": device.value if device else None,
                "train.rounds": rounds,
                "attack.iterations": iterations,
                "attack.budget": budget.value if budget else None,
                "attack.target_round": _target_round(target_round),
                "attack.rounds_used": rounds_used,
                "attack.mask": mask.value if mask else None,
                "defense.clip": clip,
                "defense.delta": delta,
                "defense.accountant": accountant.value if accountant else None,
            },
        )
        grid: dict[str, Any] = {
            "noises": _numbers(noise, float, "--noise"),
            "defenses": _names(defense),
            "attacks": _names(attack_name),
            "seeds": seeds,
            "targets": _numbers(targets, int, "--targets"),
        }
        spec = dataclasses.replace(spec, **{k: v for k, v in grid.items() if v is not None})
        from feddp_eval.pipeline import run_sweep

        try:
            with _sweep_progress(quiet or json_output) as callbacks:
                result = run_sweep(base, spec, out=out, jobs=jobs, command=sys.argv, **callbacks)
        except KeyboardInterrupt:
            raise _fail(
                f"interrupted; finished points are kept in {out}: run the same command again to resume",
                130,
            ) from None
    if json_output:
        _emit_json(result.to_json())
    elif not quiet:
        _print_sweep_table(result)


@contextmanager
def _sweep_progress(quiet: bool) -> Iterator[dict[str, Any]]:
    """Points done of the grid, the current point's stage, and time left."""
    if quiet:
        yield {}
        return
    from rich.console import Console
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
            progress.update(task, stage=description)

        def on_point(label: str) -> None:
            progress.update(task, advance=1, stage=f"done: {label}")

        yield {"on_start": on_start, "on_stage": on_stage, "on_point": on_point}


def _print_sweep_table(result: Any) -> None:
    """One table per attack (honest server first, then malicious), one line per (defense, noise):
    means over seeds and targets."""
    from rich.console import Console

    console = Console()
    attacks = sorted(
        {row.get("attack") or "?" for row in result.rows},
        key=lambda a: (any(r.get("threat") == "malicious" for r in result.rows if r.get("attack") == a), a),
    )
    for attack in attacks:
        console.print(_sweep_attack_table(result, attack))
    _print_not_run(console, result.rows)
    if result.missing:
        console.print(f"[yellow]{len(result.missing)} point(s) not finished; rerun to resume[/yellow]")
    console.print(f"results: {result.results}")
    console.print(f"report:  feddp-eval report {result.out_dir} -o {result.out_dir / 'report.pdf'}")


def _sweep_attack_table(result: Any, attack: str) -> Any:
    from statistics import mean

    from rich.table import Table

    mine = [row for row in result.rows if (row.get("attack") or "?") == attack]
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for row in mine:
        groups.setdefault((row["defense"], row["noise"]), []).append(row)
    painted = any(r.get("mask_prior_psnr") is not None for r in mine)
    threat = "malicious server" if any(r.get("threat") == "malicious" for r in mine) else "honest server"
    table = Table(title=f"{attack} ({threat}): {len(mine)} rows; means over seeds and targets")
    columns = ["defense", "σ", "ε", "Dice", "PSNR dB", "SSIM", "prior PSNR"]
    columns += ["painted-mask PSNR"] if painted else []
    columns += ["vs prior dB", "tiles > prior"]
    for column in columns:
        table.add_column(column, justify="left" if column == "defense" else "right")

    def avg(rows: list[dict[str, Any]], key: str, spec: str) -> str:
        values = [r[key] for r in rows if r.get(key) is not None]
        return format(mean(values), spec) if values else "–"

    for (name, noise), rows in groups.items():
        table.add_row(
            name,
            f"{noise:g}",
            avg(rows, "epsilon", ".3g") if name != "none" else "∞",
            avg(rows, "dice", ".3f"),
            avg(rows, "psnr", ".1f"),
            avg(rows, "ssim", ".3f"),
            avg(rows, "prior_psnr", ".1f"),
            *([avg(rows, "mask_prior_psnr", ".1f")] if painted else []),
            avg(rows, "margin_psnr", "+.1f"),
            avg(rows, "tiles_beating_prior", ".1f"),
        )
    return table


@app.command()
def report(
    source: Annotated[
        Path,
        typer.Argument(
            help="A sweep folder (feddp-eval sweep --out) or attack results (runs/attack-<hash>)."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="PDF to write. Default: SOURCE/report.pdf."),
    ] = None,
    title: Annotated[str | None, typer.Option(help="Title on the first page.")] = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Render the comparison report PDF (plus the summary as Markdown and CSV beside it).

    Reads results files only (it never trains or attacks), so it rebuilds in seconds. Points that
    are missing or unfinished are named, and everything that exists is still rendered.
    """
    with _user_errors():
        from reports import build_report

        result = build_report(source, output or source / "report.pdf", title=title)
    if json_output:
        _emit_json(
            {
                "pdf": str(result.pdf),
                "markdown": str(result.markdown),
                "csv": str(result.csv),
                "pages": result.pages,
                "rows": result.rows,
                "missing": result.missing,
            }
        )
        return
    if quiet:
        return
    for label in result.missing:
        typer.secho(f"missing: {label}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"wrote {result.pdf} ({len(result.pages)} sections, {result.rows} result rows)")
    typer.echo(f"      {result.markdown}\n      {result.csv}")


@app.command()
def check(
    baseline: Annotated[
        Path | None, typer.Option(help="Baseline TOML: a scenario and bounds per arm.")
    ] = None,
    results: Annotated[
        Path | None,
        typer.Option(
            help="Check an existing attack results.json (or its folder) instead of running the scenario."
        ),
    ] = None,
    junit: Annotated[Path | None, typer.Option(help="Write JUnit XML here, one test case per bound.")] = None,
    write_baseline: Annotated[
        Path | None,
        typer.Option(
            help="Run the scenario (--scenario) and write a first baseline with bounds at the stated margins."
        ),
    ] = None,
    scenario: Annotated[Path | None, typer.Option(help="Experiment TOML for --write-baseline.")] = None,
    margin_psnr: Annotated[float, typer.Option(help="--write-baseline: PSNR margin in dB.")] = 1.0,
    margin: Annotated[float, typer.Option(help="--write-baseline: margin for SSIM, LPIPS and Dice.")] = 0.05,
    out: Annotated[Path, typer.Option(help="Folder for the scenario's runs.")] = Path("runs"),
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Gate privacy leakage in CI: exit 0 when every bound holds, 1 on a regression, 2 on a bad baseline.

    Bounds cap leakage of defended arms (psnr_max, ssim_max, lpips_min, mask_dice_max, epsilon_max),
    keep the attack working on the undefended arm (psnr_min), and keep utility (dice_min).
    """
    with _user_errors():
        if write_baseline is not None:
            _write_baseline(
                write_baseline,
                scenario,
                out,
                {"psnr": margin_psnr, "ssim": margin, "lpips": margin, "dice": margin},
                quiet,
            )
            return
        if baseline is None:
            from feddp_eval.errors import ConfigError

            raise ConfigError("give --baseline FILE to check, or --write-baseline FILE --scenario EXP.toml")
        from feddp_eval.pipeline import run_check

        with _attack_progress(quiet or json_output) as (on_stage, on_iteration):
            result = run_check(
                baseline, results=results, out=out, on_stage=on_stage, on_iteration=on_iteration
            )
    if junit is not None:
        from feddp_eval.gate import junit_xml
        from feddp_eval.io import atomic_write_text

        with _user_errors():  # an unwritable --junit prevents the verdict CI reads: exit 2
            atomic_write_text(junit, junit_xml(result.verdicts))
    if json_output:
        _emit_json(result.to_json())
    elif not quiet:
        _print_check_table(result)
    if not result.passed:
        for verdict in result.verdicts:
            if not verdict.passed:
                typer.secho(f"regression: {verdict.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def _write_baseline(
    path: Path, scenario: Path | None, out: Path, margins: dict[str, float], quiet: bool
) -> None:
    from feddp_eval.config import load_config
    from feddp_eval.errors import ConfigError
    from feddp_eval.gate import write_baseline
    from feddp_eval.io import atomic_write_text
    from feddp_eval.pipeline import run_attack

    if scenario is None:
        raise ConfigError("--write-baseline needs --scenario EXP.toml (the experiment the baseline pins)")
    bad = {k: v for k, v in margins.items() if not (v == v and abs(v) != float("inf") and v >= 0)}
    if bad:
        raise ConfigError(f"--margin and --margin-psnr must be finite numbers >= 0, but got {bad}")
    experiment = load_config(scenario)
    if experiment.defense.name == "none":
        raise ConfigError(f"scenario {scenario} has no defense; set [defense] so there is a defended arm")
    with _attack_progress(quiet) as (on_stage, on_iteration):
        result = run_attack(experiment, out=out, on_stage=on_stage, on_iteration=on_iteration)
    from feddp_eval.safety import require_verdicts

    require_verdicts([], result.rows, source=str(result.out_dir))  # no bound from an attack that did not run
    relative = Path(os.path.relpath(Path(scenario).resolve(), path.resolve().parent))
    atomic_write_text(path, write_baseline(result.rows, scenario=relative.as_posix(), margins=margins))
    if not quiet:
        typer.echo(f"wrote {path} from {result.out_dir}")


def _print_check_table(result: Any) -> None:
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
            "–" if v.value is None else f"{v.value:.4g}",
            "–" if v.margin is None else f"{v.margin:+.4g}",
            "[green]pass[/green]" if v.passed else "[red]FAIL[/red]",
        )
    Console().print(table)


@list_app.command("attacks")
def list_attacks() -> None:
    """The registered attacks, one line each."""
    from attacks import ATTACKS

    for name in ATTACKS.names():
        attack = ATTACKS.get(name)
        typer.echo(f"{name:20s} {attack.summary}\n{'':20s} threat: {attack.threat}")


@list_app.command("defenses")
def list_defenses() -> None:
    """The registered defenses, one line each."""
    from defenses import DEFENSES

    for name in DEFENSES.names():
        typer.echo(f"{name:12s} {DEFENSES.get(name).summary}")


def main() -> None:  # pragma: no cover - console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
