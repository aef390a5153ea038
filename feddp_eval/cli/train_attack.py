"""``feddp-eval train`` and ``feddp-eval attack``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from feddp_eval.cli.app import attack_options, emit_json, experiment, parse_round, user_errors
from feddp_eval.cli.options import (
    AccountantOpt,
    AttackOpt,
    AttackOptionOpt,
    AuditCanariesOpt,
    AuditOpt,
    BatchSizeOpt,
    BudgetOpt,
    ClientFractionOpt,
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
    LocalEpochsOpt,
    LocalStepsOpt,
    LrOpt,
    MaskOpt,
    NoiseOpt,
    OptimizerOpt,
    PairedBatchesOpt,
    PruneOpt,
    QuietOpt,
    RestartsOpt,
    RoundsOpt,
    RoundsUsedOpt,
    SamplingOpt,
    SeedOpt,
    SiteByOpt,
    SitesOpt,
    TargetEpsOpt,
    TargetRoundOpt,
    TargetSiteOpt,
    TileSizeOpt,
    UtilitySeedsOpt,
    setting_overrides,
)


def train(
    ctx: typer.Context,
    config: ConfigOpt = None,
    rounds: RoundsOpt = None,
    sites: SitesOpt = None,
    local_epochs: LocalEpochsOpt = None,
    local_steps: LocalStepsOpt = None,
    batch_size: BatchSizeOpt = None,
    lr: LrOpt = None,
    optimizer: OptimizerOpt = None,
    client_fraction: ClientFractionOpt = None,
    sampling: SamplingOpt = None,
    tile_size: TileSizeOpt = None,
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

    with user_errors():
        from feddp_eval.config import apply_defense
        from feddp_eval.pipeline import run_train

        chosen = experiment(
            config,
            setting_overrides(train, ctx.params),
            arm=lambda c: apply_defense(
                c, defense=defense, noise=noise, target_epsilon=target_epsilon, check=False
            ),
            arm_flags=(defense, noise, target_epsilon),
        )
        with round_progress(chosen.train.rounds, quiet) as on_round:
            result = run_train(chosen, run_dir=out, force=force, on_round=on_round)
    if json_output:
        emit_json(result.summary.to_json())
    elif not quiet:
        print_train_summary(result)


def attack(
    ctx: typer.Context,
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
    restarts: RestartsOpt = None,
    mask: MaskOpt = None,
    reference: Annotated[bool, typer.Option(help="Also train and attack the undefended arm.")] = True,
    rounds: RoundsOpt = None,
    local_steps: LocalStepsOpt = None,
    batch_size: BatchSizeOpt = None,
    data: DataOpt = None,
    data_format: DataFormatOpt = None,
    site_by: SiteByOpt = None,
    level: LevelOpt = None,
    audit: AuditOpt = None,
    audit_canaries: AuditCanariesOpt = None,
    seed: SeedOpt = None,
    utility_seeds: UtilitySeedsOpt = None,
    paired_batches: PairedBatchesOpt = None,
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

    with user_errors():
        from feddp_eval.config import defended_config
        from feddp_eval.pipeline import run_attack

        overrides = {
            **setting_overrides(attack, ctx.params),
            "attack.target_round": parse_round(target_round),
        }
        chosen = experiment(
            config,
            overrides,
            options=attack_options(attack_option),
            arm=lambda c: defended_config(c, noise=noise, defense=defense, check=False),
            arm_flags=(defense, noise),
        )
        with attack_progress(quiet) as (on_stage, on_iteration):
            result = run_attack(
                chosen, out=out, reference=reference, on_stage=on_stage, on_iteration=on_iteration
            )
    if json_output:
        emit_json(result.to_json())
    elif not quiet:
        print_attack_table(result)
