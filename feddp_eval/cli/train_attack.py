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
    BudgetOpt,
    ClipOpt,
    ConfigOpt,
    DataOpt,
    DefenseOpt,
    DeltaOpt,
    DeviceOpt,
    IterationsOpt,
    JsonOpt,
    MaskOpt,
    NoiseOpt,
    OptimizerChoice,
    PruneOpt,
    QuietOpt,
    RoundsOpt,
    RoundsUsedOpt,
    SeedOpt,
    TargetEpsOpt,
    TargetRoundOpt,
    TargetSiteOpt,
    value,
)


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
    from feddp_eval.cli.render import print_train_summary, round_progress

    flags = {
        "seed": seed,
        "device": value(device),
        "data.source": str(data) if data else None,
        "data.sites": sites,
        "data.tile_size": tile_size,
        "train.rounds": rounds,
        "train.local_epochs": local_epochs,
        "train.local_steps": local_steps,
        "train.batch_size": batch_size,
        "train.lr": lr,
        "train.optimizer": value(optimizer),
        "train.client_fraction": client_fraction,
    }
    with user_errors():
        from feddp_eval.config import apply_defense
        from feddp_eval.pipeline import run_train

        settings = {"clip": clip, "delta": delta, "accountant": value(accountant), "prune_ratio": prune_ratio}
        chosen = apply_defense(
            experiment(config, flags), defense=defense, noise=noise, target_epsilon=target_epsilon, **settings
        )
        with round_progress(chosen.train.rounds, quiet) as on_round:
            result = run_train(chosen, run_dir=out, force=force, on_round=on_round)
    if json_output:
        emit_json(result.summary)
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
    from feddp_eval.cli.attack_table import print_attack_table
    from feddp_eval.cli.render import attack_progress

    flags = {
        "seed": seed,
        "device": value(device),
        "train.rounds": rounds,
        "data.source": str(data) if data else None,
        "attack.name": attack_name,
        "attack.target_site": target_site,
        "attack.rounds_used": rounds_used,
        "attack.budget": value(budget),
        "attack.iterations": iterations,
        "attack.restarts": restarts,
        "attack.mask": value(mask),
    }
    with user_errors():
        from feddp_eval.config import defended_config, with_attack_options
        from feddp_eval.pipeline import run_attack

        flags["attack.target_round"] = parse_round(target_round)
        chosen = with_attack_options(experiment(config, flags), attack_options(attack_option))
        chosen = defended_config(chosen, noise=noise, defense=defense)
        with attack_progress(quiet) as (on_stage, on_iteration):
            result = run_attack(
                chosen, out=out, reference=reference, on_stage=on_stage, on_iteration=on_iteration
            )
    if json_output:
        emit_json(result.to_json())
    elif not quiet:
        print_attack_table(result)
