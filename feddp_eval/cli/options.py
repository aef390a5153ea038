"""Options shared by several commands, each defined once.

Plugin names are not listed here (that would import every plugin, and torch, for ``--help``):
``feddp-eval list attacks`` / ``list defenses`` print the registries, and an unknown name is an
error listing the registered ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from feddp_eval.config import AccountantName, AttackBudget, Device, EngineName, MaskKnowledge
from feddp_eval.sweep.grid import ExecutorName

# Choices are the config's own Literal types: one list of values, shown by --help and checked by typer.
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Experiment TOML file; flags given here override its values.",
        dir_okay=True,  # a folder is refused by read_toml in one line, not a usage box
    ),
]
SeedOpt = Annotated[int | None, typer.Option(help="Experiment seed; every random draw derives from it.")]
DeviceOpt = Annotated[Device | None, typer.Option(help="Where to compute: auto picks CUDA when present.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")]
DataOpt = Annotated[
    Path | None,
    typer.Option(
        help="Real data folder (images/ + masks/, or one such sub-folder per site). "
        "Default: the embedded synthetic H&E sites."
    ),
]
DataFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--data-format",
        help="How --data is laid out: a dataset format read as its authors ship it (`feddp-eval list "
        "formats`). Default: images/ + masks/ pairs.",
    ),
]
SiteByOpt = Annotated[
    str | None,
    typer.Option(
        help="How --data-format splits the dataset into sites (`feddp-eval list formats` shows each "
        "format's choices, its default first)."
    ),
]
LevelOpt = Annotated[
    int | None,
    typer.Option(help="Pyramid level a whole-slide format reads (0: full resolution)."),
]
DefenseOpt = Annotated[
    str | None,
    typer.Option(
        help="Defense (see `feddp-eval list defenses`). Default: the config's, or dp-sgd when --noise > 0 "
        "or --target-epsilon is given. central-dp protects the aggregate and the final model, NOT the "
        "updates the server receives."
    ),
]
NoiseOpt = Annotated[float | None, typer.Option(help="Noise multiplier σ of the chosen defense.")]
ClipOpt = Annotated[
    float | None,
    typer.Option(help="Clipping bound C: per sample (dp-sgd) or per update (local-dp, central-dp)."),
]
DeltaOpt = Annotated[float | None, typer.Option(help="δ at which ε is reported.")]
AccountantOpt = Annotated[AccountantName | None, typer.Option(help="Privacy accountant.")]
TargetEpsOpt = Annotated[
    float | None,
    typer.Option(help="Calibrate σ so the whole planned run spends this ε (instead of --noise)."),
]
PruneOpt = Annotated[float | None, typer.Option(help="prune: share of update coordinates set to zero.")]
EngineOpt = Annotated[
    EngineName | None,
    typer.Option(
        help="What runs the rounds: local (this process) or flower (Flower ClientApps on Flower's "
        "Simulation Runtime, one SuperNode per site; needs the flower extra). Same numbers either way."
    ),
]
RoundsOpt = Annotated[int | None, typer.Option(help="Federated rounds of every training run.")]
AuditOpt = Annotated[
    bool | None,
    typer.Option(
        "--audit/--no-audit",
        help="Plant canaries and audit each training run: ε̂, a one-run lower bound on the code's ε, "
        "beside the accountant's ε (ε̂ > ε fails `check`).",
    ),
]
AuditCanariesOpt = Annotated[
    int | None, typer.Option(help="Canaries the audit plants (m, default 1000; ε̂ can reach about ln m).")
]

AttackOpt = Annotated[
    str | None,
    typer.Option(
        "--attack",
        help="Attack, by registered name (`feddp-eval list attacks`; default inverting-gradients). A "
        "malicious server's attack (imprint) sends the target a modified model: its own training run.",
    ),
]
AttackOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--attack-option",
        help="KEY=VALUE of the attack's own settings (repeatable), as in its [attack.<name>] TOML table, "
        "e.g. --attack-option tv_weight=0.1.",
    ),
]
TargetSiteOpt = Annotated[
    int | None, typer.Option(help="Site whose update is attacked (default: the smallest site).")
]
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
    AttackBudget | None,
    typer.Option(
        help="Attack budget: quick (500 iterations, default), standard (2,000), thorough (4,000 x 2 "
        "restarts); --iterations/--restarts win over it."
    ),
]
IterationsOpt = Annotated[int | None, typer.Option(help="Attack iterations per restart.")]
MaskOpt = Annotated[
    MaskKnowledge | None,
    typer.Option(
        help="known: the attacker has the true masks (the most it could know, default); "
        "unknown: recovered jointly."
    ),
]

# ---------------------------------------------------------------------------- sweep

SweepNoiseOpt = Annotated[
    str | None,
    typer.Option(
        "--noise",
        help="Comma-separated noise multipliers σ. Default: 0,0.001,0.003,0.01,0.03,0.1,0.3,1.1,2 "
        "(leakage collapses decades below 1.1). σ = 0 (no defense) is always included.",
    ),
]
SweepDefenseOpt = Annotated[
    str | None,
    typer.Option(
        "--defense",
        help="Comma-separated defenses with a noise multiplier σ (default dp-sgd; `feddp-eval list "
        "defenses`; an unknown or noiseless one is refused with the list).",
    ),
]
SweepAttackOpt = Annotated[
    str | None,
    typer.Option(
        "--attack",
        help="Comma-separated attacks (default inverting-gradients; `feddp-eval list attacks`). A "
        "malicious server's attack (imprint) trains its own runs, reported apart from the honest server's.",
    ),
]
SeedsOpt = Annotated[int | None, typer.Option(help="Seeds per point: the experiment seed, seed+1, ...")]
AttackSeedsOpt = Annotated[
    int | None,
    typer.Option(
        help="Attack only the first N seeds; later seeds train for utility alone (their rows have empty "
        "attack cells). Default: attack every seed."
    ),
]
TargetsOpt = Annotated[
    str | None,
    typer.Option(help="Comma-separated site indices whose update is attacked (-1: the smallest site)."),
]
SweepBatchSizesOpt = Annotated[
    str | None,
    typer.Option(
        "--batch-size",
        help="Comma-separated local batch sizes to train at (e.g. 1,4,8); each is a training run of its "
        "own. Default: the config's train.batch_size.",
    ),
]
SweepLocalStepsOpt = Annotated[
    str | None,
    typer.Option(
        "--local-steps",
        help="Comma-separated local optimizer steps per round to train at (e.g. 1,3; 0: local_epochs "
        "passes). With --batch-size, the report maps where the honest server stops leaking. Default: "
        "the config's train.local_steps.",
    ),
]
SweepConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Experiment TOML; an optional \\[sweep] table sets noises, defenses, attacks, seeds, "
        "targets, batch_sizes, local_steps. Flags override it.",
        dir_okay=True,  # refused by read_toml in one line
    ),
]
SweepOutOpt = Annotated[Path, typer.Option(help="Sweep folder (resumable: rerun the same command).")]
JobsOpt = Annotated[
    int,
    typer.Option(
        min=1,
        help="Points run in parallel processes (with --executor ray: the local Ray's size; each task "
        "computes with cores / JOBS threads either way).",
    ),
]
ExecutorOpt = Annotated[
    ExecutorName | None,
    typer.Option(
        help="How the points run: process (a pool of --jobs processes here; the default) or ray (Ray "
        "tasks on a local Ray, or on the cluster at --address; needs the flower extra). Same results. "
        "Default: \\[sweep] executor, else process.",
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        help="With --executor ray: join the running Ray cluster at HOST:PORT (its head's `ray start "
        "--head --port`), or auto (RAY_ADDRESS, or the cluster started on this machine). Default: "
        "\\[sweep] address, else start a local Ray for the sweep.",
    ),
]
