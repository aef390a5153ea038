"""``feddp-eval sweep``, ``feddp-eval report`` and ``feddp-eval check``."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from feddp_eval.cli.app import (
    attack_options,
    emit_json,
    fail,
    names,
    numbers,
    parse_round,
    user_errors,
)
from feddp_eval.cli.options import (
    AccountantOpt,
    AddressOpt,
    AttackOptionOpt,
    AttackSeedsOpt,
    AuditCanariesOpt,
    AuditOpt,
    BudgetOpt,
    ClipOpt,
    DataFormatOpt,
    DataOpt,
    DeltaOpt,
    DeviceOpt,
    EngineOpt,
    ExecutorOpt,
    IterationsOpt,
    JobsOpt,
    JsonOpt,
    LevelOpt,
    MaskOpt,
    QuietOpt,
    RoundsOpt,
    RoundsUsedOpt,
    SeedOpt,
    SeedsOpt,
    SiteByOpt,
    SweepAttackOpt,
    SweepBatchSizesOpt,
    SweepConfigOpt,
    SweepDefenseOpt,
    SweepLocalStepsOpt,
    SweepNoiseOpt,
    SweepOutOpt,
    TargetRoundOpt,
    TargetsOpt,
    setting_overrides,
)


def sweep(
    ctx: typer.Context,
    noise: SweepNoiseOpt = None,
    defense: SweepDefenseOpt = None,
    attack_name: SweepAttackOpt = None,
    attack_option: AttackOptionOpt = None,
    seeds: SeedsOpt = None,
    attack_seeds: AttackSeedsOpt = None,
    targets: TargetsOpt = None,
    batch_sizes: SweepBatchSizesOpt = None,
    local_steps: SweepLocalStepsOpt = None,
    config: SweepConfigOpt = None,
    out: SweepOutOpt = Path("runs/sweep"),
    jobs: JobsOpt = 1,
    executor: ExecutorOpt = None,
    address: AddressOpt = None,
    engine: EngineOpt = None,
    rounds: RoundsOpt = None,
    data: DataOpt = None,
    data_format: DataFormatOpt = None,
    site_by: SiteByOpt = None,
    level: LevelOpt = None,
    iterations: IterationsOpt = None,
    budget: BudgetOpt = None,
    target_round: TargetRoundOpt = None,
    rounds_used: RoundsUsedOpt = None,
    mask: MaskOpt = None,
    clip: ClipOpt = None,
    delta: DeltaOpt = None,
    accountant: AccountantOpt = None,
    audit: AuditOpt = None,
    audit_canaries: AuditCanariesOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Privacy–utility sweep: train → capture → attack → score at every noise level, defense and seed
    (and, given --batch-size or --local-steps, at every local batch size and step count).

    Each point is keyed by its config hash: finished points are never recomputed, so an interrupted
    sweep resumes where it stopped and ends with the same results.csv. Then render the comparison
    report with `feddp-eval report OUT -o report.pdf`.
    """
    grid = {
        "noises": noise,
        "defenses": defense,
        "attacks": attack_name,
        "seeds": seeds,
        "attack_seeds": attack_seeds,
        "targets": targets,
        "batch_sizes": batch_sizes,
        "local_steps": local_steps,
        "executor": executor,
        "address": address,
    }
    with user_errors():
        overrides = setting_overrides(sweep, ctx.params)
        overrides["attack.target_round"] = parse_round(target_round)
        base, spec = _sweep_plan(config, overrides, grid, attack_options(attack_option))
        from feddp_eval.cli.render import sweep_progress
        from feddp_eval.pipeline import run_sweep

        try:
            with sweep_progress(quiet or json_output) as callbacks:
                result = run_sweep(base, spec, out=out, jobs=jobs, command=sys.argv, **callbacks)
        except KeyboardInterrupt:
            message = f"interrupted; finished points are kept in {out}: run the same command again to resume"
            raise fail(message, 130) from None
    if json_output:
        emit_json(result.to_json())
    elif not quiet:
        _print_sweep(result)


def _sweep_plan(
    config: Path | None, flags: dict[str, Any], grid: dict[str, Any], options: dict[str, Any]
) -> Any:
    """The base experiment and the grid: the file's (or the defaults), with the flags on top."""
    import attacks as attack_plugins  # noqa: F401  (installs the check of [attack.<name>] tables that validate runs)
    from feddp_eval.config import ExperimentConfig, given, validate, with_overrides
    from feddp_eval.sweep import SweepSpec, load_sweep_config

    base, spec = load_sweep_config(config) if config else (validate(ExperimentConfig()), SweepSpec())
    base = with_overrides(base, given(flags))
    if options:  # the settings of every swept attack that has them
        attacks = names(grid["attacks"]) or spec.attacks
        merged = {a: {**base.attack.options.get(a, {}), **options} for a in attacks}
        base = with_overrides(base, {"attack.options": {**base.attack.options, **merged}})
    parsed = {
        "noises": numbers(grid["noises"], float, "--noise"),
        "defenses": names(grid["defenses"]),
        "attacks": names(grid["attacks"]),
        "seeds": grid["seeds"],
        "attack_seeds": grid["attack_seeds"],
        "targets": numbers(grid["targets"], int, "--targets"),
        "batch_sizes": numbers(grid["batch_sizes"], int, "--batch-size"),
        "local_steps": numbers(grid["local_steps"], int, "--local-steps"),
        "executor": grid["executor"],
        "address": grid["address"],
    }
    return base, dataclasses.replace(spec, **{k: v for k, v in parsed.items() if v is not None})


def _print_sweep(result: Any) -> None:
    from rich.console import Console

    from feddp_eval.cli.render import print_not_run, sweep_tables
    from feddp_eval.sweep import stage_seconds

    console = Console()
    for table in sweep_tables(result):
        console.print(table)
    print_not_run(console, result.rows)
    if result.missing:
        console.print(f"[yellow]{len(result.missing)} point(s) not finished; rerun to resume[/yellow]")
    if result.unplanned:
        console.print(
            f"[yellow]{result.unplanned} finished point(s) in {result.out_dir} are not in this grid: another "
            "grid's, or computed before a change re-keyed them (`attack.plateau`, issue #23, re-keyed every "
            "honest-server attack). They are kept and not read; their "
            "training runs were reused where the training hash matched.[/yellow]"
        )
    seconds = stage_seconds(result.rows)
    console.print(
        f"time of the finished points: {seconds['total']:.0f} s, training {seconds['training']:.0f} s "
        f"(each run once), attacks {seconds['attacks']:.0f} s (per point: runtime.csv)"
    )
    console.print(f"results: {result.results}")
    console.print(f"report:  feddp-eval report {result.out_dir} -o {result.out_dir / 'report.pdf'}")


def report(
    source: Annotated[
        Path,
        typer.Argument(
            help="A sweep folder (feddp-eval sweep --out) or attack results (runs/attack-<hash>)."
        ),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="PDF to write. Default: SOURCE/report.pdf.")
    ] = None,
    title: Annotated[str | None, typer.Option(help="Title on the first page.")] = None,
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Render the comparison report PDF (plus the summary as Markdown and CSV beside it).

    Reads results files only (it never trains or attacks), so it rebuilds in seconds. Points that
    are missing or unfinished are named, and everything that exists is still rendered.
    """
    with user_errors():
        import attacks  # noqa: F401  # the report reads what each attack declares (its known-leak yardstick)
        import defenses  # noqa: F401  # the report reads what each defense declares (feddp_eval.plugins)
        from reports import build_report

        result = build_report(source, output or source / "report.pdf", title=title)
    if json_output:
        files = {"pdf": str(result.pdf), "markdown": str(result.markdown), "csv": str(result.csv)}
        emit_json({**files, "pages": result.pages, "rows": result.rows, "missing": result.missing})
    elif not quiet:
        for label in result.missing:
            typer.secho(f"missing: {label}", fg=typer.colors.YELLOW, err=True)
        typer.echo(f"wrote {result.pdf} ({len(result.pages)} sections, {result.rows} result rows)")
        typer.echo(f"      {result.markdown}\n      {result.csv}")


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
    repeat_threads: Annotated[
        str | None,
        typer.Option(
            help="--write-baseline: run the scenario at each of these thread counts (e.g. 1,2,4); each bound "
            "then sits beyond the worst run by max(margin, the runs' spread)."
        ),
    ] = None,
    repeat_seeds: Annotated[
        int, typer.Option(help="--write-baseline: also run at the next N-1 seeds (spread over seeds).")
    ] = 1,
    out: Annotated[Path, typer.Option(help="Folder for the scenario's runs.")] = Path("runs"),
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Gate privacy leakage in CI: exit 0 when every bound holds, 1 on a regression, 2 on a bad baseline.

    Bounds cap leakage of defended arms (psnr_max, ssim_max, lpips_min, mask_dice_max, epsilon_max),
    keep the attack working on the undefended arm (psnr_min), and keep utility (dice_min). Every
    gate metric of the results schema can be bounded (see the README).
    """
    with user_errors():
        if write_baseline is not None:
            margins = {"psnr": margin_psnr, "ssim": margin, "lpips": margin, "dice": margin}
            _write_baseline(write_baseline, scenario, out, margins, quiet, repeat_threads, repeat_seeds)
            return
        result = _run_check(baseline, results, out, quiet or json_output)
    if junit is not None:
        from feddp_eval.gate import junit_xml
        from feddp_eval.io import atomic_write_text

        with user_errors():  # an unwritable --junit prevents the verdict CI reads: exit 2
            atomic_write_text(junit, junit_xml(result.verdicts))
    if json_output:
        emit_json(result.to_json())
    elif not quiet:
        from feddp_eval.cli.render import print_check_table

        print_check_table(result)
    if not result.passed:
        for verdict in result.verdicts:
            if not verdict.passed:
                typer.secho(f"regression: {verdict.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def _run_check(baseline: Path | None, results: Path | None, out: Path, quiet: bool) -> Any:
    from feddp_eval.cli.render import attack_progress
    from feddp_eval.errors import ConfigError
    from feddp_eval.pipeline import run_check

    if baseline is None:
        raise ConfigError("give --baseline FILE to check, or --write-baseline FILE --scenario EXP.toml")
    with attack_progress(quiet) as (on_stage, on_iteration):
        return run_check(baseline, results=results, out=out, on_stage=on_stage, on_iteration=on_iteration)


def _write_baseline(
    path: Path,
    scenario: Path | None,
    out: Path,
    margins: dict[str, float],
    quiet: bool,
    repeat_threads: str | None,
    repeat_seeds: int,
) -> None:
    import attacks  # noqa: F401  (installs the check of [attack.<name>] tables that validate runs)
    from feddp_eval.cli.render import attack_progress
    from feddp_eval.errors import ConfigError
    from feddp_eval.workflows.check import write_baseline_file

    if scenario is None:
        raise ConfigError("--write-baseline needs --scenario EXP.toml (the experiment the baseline pins)")
    try:
        threads = tuple(int(t) for t in repeat_threads.split(",")) if repeat_threads else ()
    except ValueError:
        raise ConfigError(
            f"--repeat-threads takes thread counts like 1,2,4, but got {repeat_threads!r}"
        ) from None
    with attack_progress(quiet) as (on_stage, on_iteration):
        sources = write_baseline_file(
            path,
            scenario,
            out=out,
            margins=margins,
            threads=threads,
            seeds=repeat_seeds,
            on_stage=on_stage,
            on_iteration=on_iteration,
        )
    if not quiet:
        typer.echo(f"wrote {path} from {len(sources)} run(s): {', '.join(sources)}")
