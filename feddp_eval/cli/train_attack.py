"""``feddp-eval train`` and ``feddp-eval attack``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from feddp_eval.cli.app import attack_options, emit_json, experiment, flags, parse_round, user_errors
from feddp_eval.cli.options import (
    AccountantOpt,
    AttackOpt,
    AttackOptionOpt,
    AuditCanariesOpt,
    AuditOpt,
    BudgetOpt,
    ClipOpt,
    ConfigOpt,
    DataFormatOpt,
    DataOpt,
    DefenseOpt,
    DeltaOpt,
    DeviceOpt,
    EngineOpt,
    IterationsOpt,
    JsonOpt,
    LevelOpt,
    MaskOpt,
    NoiseOpt,
    PruneOpt,
    QuietOpt,
    RoundsOpt,
    RoundsUsedOpt,
    SeedOpt,
    SiteByOpt,
    TargetEpsOpt,
    TargetRoundOpt,
    TargetSiteOpt,
)
from feddp_eval.config import OptimizerName

TRAIN_FLAGS = {
    "seed": "seed",
    "device": "device",
    "data": "data.source",
    "data_format": "data.format",
    "site_by": "data.site_by",
    "level": "data.level",
    "sites": "data.sites",
    "tile_size": "data.tile_size",
    "rounds": "train.rounds",
    "local_epochs": "train.local_epochs",
    "local_steps": "train.local_steps",
    "batch_size": "train.batch_size",
    "lr": "train.lr",
    "optimizer": "train.optimizer",
    "client_fraction": "train.client_fraction",
    "audit": "train.audit",
    "audit_canaries": "train.audit_canaries",
    "engine": "train.engine",
}
DEFENSE_SETTINGS = {
    "clip": "clip",
    "delta": "delta",
    "accountant": "accountant",
    "prune_ratio": "prune_ratio",
}
ATTACK_FLAGS = {
    "seed": "seed",
    "device": "device",
    "rounds": "train.rounds",
    "engine": "train.engine",
    "data": "data.source",
    "data_format": "data.format",
    "site_by": "data.site_by",
    "level": "data.level",
    "attack_name": "attack.name",
    "target_site": "attack.target_site",
    "rounds_used": "attack.rounds_used",
    "budget": "attack.budget",
    "iterations": "attack.iterations",
    "restarts": "attack.restarts",
    "mask": "attack.mask",
    "audit": "train.audit",
    "audit_canaries": "train.audit_canaries",
    "utility_seeds": "attack.utility_seeds",
}


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
    optimizer: Annotated[OptimizerName | None, typer.Option(help="Local optimizer.")] = None,
    client_fraction: Annotated[float | None, typer.Option(help="Share of sites sampled per round.")] = None,
    tile_size: Annotated[int | None, typer.Option(help="Tile edge in pixels.")] = None,
    data: DataOpt = None,
    data_format: DataFormatOpt = None,
    site_by: SiteByOpt = None,
    level: LevelOpt = None,
    defense: DefenseOpt = None,
    noise: NoiseOpt = None,
    clip: ClipOpt = None,
    delta: DeltaOpt = None,
    accountant: AccountantOpt = None,
    target_epsilon: TargetEpsOpt = None,
    prune_ratio: PruneOpt = None,
    audit: AuditOpt = None,
    audit_canaries: AuditCanariesOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    engine: EngineOpt = None,
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
    from feddp_eval.cli.render import print_train_summary, round_progress

    options = locals()  # every option, by parameter name: mapped onto config keys below
    with user_errors():
        from feddp_eval.config import apply_defense
        from feddp_eval.pipeline import run_train

        base = experiment(config, flags(options, TRAIN_FLAGS))
        settings = flags(options, DEFENSE_SETTINGS)
        chosen = apply_defense(base, defense=defense, noise=noise, target_epsilon=target_epsilon, **settings)
        with round_progress(chosen.train.rounds, quiet) as on_round:
            result = run_train(chosen, run_dir=out, force=force, on_round=on_round)
    if json_output:
        emit_json(result.summary.to_json())
    elif not quiet:
        print_train_summary(result)


def attack(
    noise: Annotated[
        float | None,
        typer.Option(help="Noise multiplier σ of the defended arm (default 1.1 unless a defense is named)."),
    ] = None,
    defense: DefenseOpt = None,
    config: ConfigOpt = None,
    attack_name: AttackOpt = None,
    attack_option: AttackOptionOpt = None,
    target_site: TargetSiteOpt = None,
    target_round: TargetRoundOpt = None,
    rounds_used: RoundsUsedOpt = None,
    budget: BudgetOpt = None,
    iterations: IterationsOpt = None,
    restarts: Annotated[int | None, typer.Option(help="Attack restarts (one batched optimisation).")] = None,
    mask: MaskOpt = None,
    reference: Annotated[bool, typer.Option(help="Also train and attack the undefended arm.")] = True,
    rounds: RoundsOpt = None,
    data: DataOpt = None,
    data_format: DataFormatOpt = None,
    site_by: SiteByOpt = None,
    level: LevelOpt = None,
    audit: AuditOpt = None,
    audit_canaries: AuditCanariesOpt = None,
    seed: SeedOpt = None,
    utility_seeds: Annotated[
        int | None,
        typer.Option(
            "--seeds",
            help="Train each arm at this many paired seeds (seed, seed+1, …) for ΔDice and its 95% "
            "interval; only the first is attacked (default 3; 1: one run, the ΔDice cannot tell).",
        ),
    ] = None,
    device: DeviceOpt = None,
    engine: EngineOpt = None,
    out: Annotated[Path, typer.Option(help="Folder for training runs and attack results.")] = Path("runs"),
    json_output: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train with and without DP, invert the same client's update in both, and compare leakage.

    Default scenario: the smallest site (a handful of tiles, one local step) in round 1, attacked by
    Inverting Gradients with an H&E stain prior; the attacker knows the masks (the most it could know).
    Training runs are reused when their config is unchanged.
    """
    from feddp_eval.cli.attack_table import print_attack_table
    from feddp_eval.cli.render import attack_progress

    options = locals()  # every option, by parameter name: mapped onto config keys below
    with user_errors():
        from feddp_eval.config import defended_config, with_attack_options
        from feddp_eval.pipeline import run_attack

        overrides = {**flags(options, ATTACK_FLAGS), "attack.target_round": parse_round(target_round)}
        chosen = with_attack_options(experiment(config, overrides), attack_options(attack_option))
        chosen = defended_config(chosen, noise=noise, defense=defense)
        with attack_progress(quiet) as (on_stage, on_iteration):
            result = run_attack(
                chosen, out=out, reference=reference, on_stage=on_stage, on_iteration=on_iteration
            )
    if json_output:
        emit_json(result.to_json())
    elif not quiet:
        print_attack_table(result)
