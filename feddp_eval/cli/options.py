"""Options shared by several commands, each defined once.

An option that sets one config setting is a :class:`SettingOption`: it names the setting's dotted
key, its help is the setting's own docstring entry (:func:`feddp_eval.config.setting_help`), and
:func:`setting_overrides` turns a command's given options into config overrides by those keys, so
no command keeps a table of flag names.

Plugin names are not listed here (that would import every plugin, and torch, for ``--help``):
``feddp-eval list attacks`` / ``list defenses`` print the registries, and an unknown name is an
error listing the registered ones.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.models import OptionInfo

from feddp_eval.config import (
    AccountantName,
    AttackBudget,
    Device,
    EngineName,
    ExperimentConfig,
    MaskKnowledge,
    OptimizerName,
    SamplingName,
    setting_help,
)
from feddp_eval.sweep.grid import ExecutorName


class SettingOption(OptionInfo):
    """A command-line option that sets the config setting ``key`` (dotted, ``train.rounds``).

    Its help is the setting's docstring entry; ``param_decls`` rename the option (``--data`` for
    ``data.source``) and ``help`` adds a sentence for the command line.
    """

    def __init__(self, key: str, *param_decls: str, more: str = "") -> None:
        text = setting_help(ExperimentConfig, key).replace("[", "\\[")  # rich markup reads [x] as a tag
        super().__init__(default=..., param_decls=param_decls, help=f"{text} {more}".strip())
        self.key = key


def setting_overrides(command: Callable[..., Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted config overrides from ``command``'s options that are :class:`SettingOption` s, by the
    parameter values in ``given`` (a command's ``ctx.params``); a choice becomes its string and a
    path its text; an option not given (``None``) stays ``None``."""
    overrides: dict[str, Any] = {}
    for name, hint in typing.get_type_hints(command, include_extras=True).items():
        for option in getattr(hint, "__metadata__", ()):
            if isinstance(option, SettingOption):
                value = given[name]
                if isinstance(value, Enum):
                    value = value.value
                overrides[option.key] = str(value) if isinstance(value, Path) else value
    return overrides


# ---------------------------------------------------------------------------- options that set a setting

SeedOpt = Annotated[int | None, SettingOption("seed")]
DeviceOpt = Annotated[Device | None, SettingOption("device")]
DataOpt = Annotated[Path | None, SettingOption("data.source", "--data")]
DataFormatOpt = Annotated[str | None, SettingOption("data.format", "--data-format")]
SiteByOpt = Annotated[str | None, SettingOption("data.site_by")]
LevelOpt = Annotated[int | None, SettingOption("data.level")]
SitesOpt = Annotated[int | None, SettingOption("data.sites")]
TileSizeOpt = Annotated[int | None, SettingOption("data.tile_size")]
RoundsOpt = Annotated[int | None, SettingOption("train.rounds")]
LocalEpochsOpt = Annotated[int | None, SettingOption("train.local_epochs")]
LocalStepsOpt = Annotated[int | None, SettingOption("train.local_steps")]
BatchSizeOpt = Annotated[int | None, SettingOption("train.batch_size")]
LrOpt = Annotated[float | None, SettingOption("train.lr")]
OptimizerOpt = Annotated[OptimizerName | None, SettingOption("train.optimizer")]
SamplingOpt = Annotated[SamplingName | None, SettingOption("train.sampling")]
ClientFractionOpt = Annotated[float | None, SettingOption("train.client_fraction")]
EngineOpt = Annotated[EngineName | None, SettingOption("train.engine")]
AuditOpt = Annotated[bool | None, SettingOption("train.audit", "--audit/--no-audit")]
AuditCanariesOpt = Annotated[int | None, SettingOption("train.audit_canaries")]
ClipOpt = Annotated[float | None, SettingOption("defense.clip")]
DeltaOpt = Annotated[float | None, SettingOption("defense.delta")]
AccountantOpt = Annotated[AccountantName | None, SettingOption("defense.accountant")]
PruneOpt = Annotated[float | None, SettingOption("defense.prune_ratio")]
AttackOpt = Annotated[str | None, SettingOption("attack.name", "--attack")]
TargetSiteOpt = Annotated[int | None, SettingOption("attack.target_site")]
RoundsUsedOpt = Annotated[int | None, SettingOption("attack.rounds_used")]
BudgetOpt = Annotated[AttackBudget | None, SettingOption("attack.budget")]
IterationsOpt = Annotated[int | None, SettingOption("attack.iterations")]
RestartsOpt = Annotated[int | None, SettingOption("attack.restarts")]
MaskOpt = Annotated[MaskKnowledge | None, SettingOption("attack.mask")]
UtilitySeedsOpt = Annotated[int | None, SettingOption("attack.utility_seeds", "--seeds")]
PairedBatchesOpt = Annotated[
    bool | None, SettingOption("attack.paired_batches", "--paired-batches/--no-paired-batches")
]

# ---------------------------------------------------------------------------- other options

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
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or tables.")]
DefenseOpt = Annotated[
    str | None,
    typer.Option(
        help="Defense (see `feddp-eval list defenses`). Default: the config's, or dp-sgd when --noise > 0 "
        "or --target-epsilon is given. central-dp protects the aggregate and the final model, NOT the "
        "updates the server receives."
    ),
]
NoiseOpt = Annotated[float | None, typer.Option(help="Noise multiplier σ of the chosen defense.")]
TargetEpsOpt = Annotated[
    float | None,
    typer.Option(help="Calibrate σ so the whole planned run spends this ε (instead of --noise)."),
]

AttackOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--attack-option",
        help="KEY=VALUE of the attack's own settings (repeatable), as in its [attack.<name>] TOML table, "
        "e.g. --attack-option tv_weight=0.1.",
    ),
]
TargetRoundOpt = Annotated[
    str | None,
    typer.Option(
        help="Round whose update is attacked, or 'all': every round the site took part in, inverted "
        "jointly (multi-round honest server)."
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
