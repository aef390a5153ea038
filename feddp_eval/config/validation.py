"""One validation pass over a whole config: every problem found is reported at once.

A setting's own range and ceiling are declared with the setting (:mod:`~feddp_eval.config.fields`)
and checked from there; what is written here ties settings together (a tile size divisible by the
U-Net's pooling, a round before the last one) or asks a plugin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from feddp_eval.config.fields import ceiling_problems, range_problems
from feddp_eval.config.sections import (
    AttackSettings,
    DataConfig,
    DefenseConfig,
    ExperimentConfig,
    ModelConfig,
    TrainConfig,
)
from feddp_eval.errors import ConfigError
from feddp_eval.plugins import AttackCard, attack_cards

Need = Callable[[bool, str], None]

# What [attack] sets for every attack; an [attack.<name>] table may not set them again.
SHARED_ATTACK_SETTINGS = frozenset({"iterations", "restarts", "time_budget", "plateau", "image", "init"})


def validate(config: ExperimentConfig) -> ExperimentConfig:
    """Check value ranges across the whole config and raise one error listing every problem."""
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    _data(config.data, config.model, need)
    need(
        config.capture or not config.train.audit,
        "`train.audit = true` scores canaries from the captured updates, but `capture` is false; "
        "set capture = true or turn the audit off",
    )
    _defense(config.defense, need)
    _attack_recipe(config.attack, need)
    _attack_rounds(config.attack, config.train, need)
    problems += attack_option_problems(config.attack)
    problems = merge_problems(setting_problems(config), [*range_problems(config), *problems])
    if problems:
        raise ConfigError(problems)
    return config


def _data(d: DataConfig, m: ModelConfig, need: Need) -> None:
    pooling = 2 ** min(max(m.depth, 0), 64)  # a hostile depth must not make 2**depth hang; reported apart
    if isinstance(d.train_tiles, tuple) and d.source == "synthetic":
        need(
            len(d.train_tiles) == d.sites,
            f"`data.train_tiles` lists {len(d.train_tiles)} sites but `data.sites` is {d.sites}; "
            "give one number per site or a single number",
        )
    need(
        d.difficulty == "easy" or d.source == "synthetic",
        f"`data.difficulty = {d.difficulty!r}` applies to synthetic tiles only, but `data.source` is "
        f"{d.source!r}; drop the difficulty or use source = 'synthetic'",
    )
    need(
        m.depth > 64 or d.tile_size % pooling == 0,
        f"`data.tile_size` ({d.tile_size}) must be divisible by 2**model.depth ({pooling})",
    )
    if d.format is not None or d.site_by is not None or d.level != 0:  # else no format is imported
        from feddp_eval.data.formats import format_problems

        for problem in format_problems(d.source, d.format, d.site_by, d.level):
            need(False, problem)


FLOAT32_RESOLUTION = 2.0**-23  # the gap between 1 and the next float32: parameters and updates are float32


def _defense(defense: DefenseConfig, need: Need) -> None:
    for at, dp in (("defense", defense), ("defense.server", defense.server)):
        if dp is None:
            continue
        need(
            not 0 < dp.noise * dp.clip < FLOAT32_RESOLUTION,
            f"`{at}.noise` = {dp.noise:g} with clip {dp.clip:g} adds noise of std {dp.noise * dp.clip:.3g}, "
            f"below float32's resolution of values of order 1 ({FLOAT32_RESOLUTION:.3g}): it is numerically "
            "zero, and its ε would describe noise that was never added; use noise = 0 for none, or a σ "
            f"with σ·clip >= {FLOAT32_RESOLUTION:.3g}",
        )


def _attack_rounds(a: AttackSettings, t: TrainConfig, need: Need) -> None:
    need(
        isinstance(a.target_round, int) or a.target_round == "all",
        f"`attack.target_round` must be a round number or 'all', but got {a.target_round!r}",
    )
    if isinstance(a.target_round, int):
        need(
            t.rounds < 1 or a.target_round <= t.rounds,
            f"`attack.target_round` ({a.target_round}) is after the last round ({t.rounds})",
        )
        need(
            a.rounds_used in (0, 1),
            f"`attack.rounds_used` ({a.rounds_used}) needs `attack.target_round = 'all'` (one round "
            f"is attacked now: {a.target_round}); set target_round to 'all' or drop rounds_used",
        )
    need(
        t.rounds < 1 or a.rounds_used <= t.rounds,
        f"`attack.rounds_used` ({a.rounds_used}) is more than the run's {t.rounds} rounds",
    )
    if a.multi_round and (cards := _attack_cards("`attack.target_round = 'all'`", need)) is not None:
        need(
            not any(c.name == a.name and c.modifies_model is not None for c in cards),
            f"`attack.name` {a.name!r} modifies the model the server sends in one round: give that round "
            "as `attack.target_round` (a number), not 'all'",
        )


def _attack_recipe(a: AttackSettings, need: Need) -> None:
    """A recipe other than ``default`` (which every attack has) is one the attack declares."""
    if a.recipe == "default" or (cards := _attack_cards(f"`attack.recipe = {a.recipe!r}`", need)) is None:
        return
    owners = [c.name for c in cards if a.recipe in c.recipes]
    need(
        a.name in owners,
        f"`attack.recipe = {a.recipe!r}` exists for {' and '.join(owners) or 'no attack'} only, but the "
        f"attack is {a.name!r}; drop the recipe" + "".join(f" or pick --attack {n}" for n in owners[:1]),
    )


def _attack_cards(what: str, need: Need) -> list[AttackCard] | None:
    """What the attacks declare (:mod:`feddp_eval.plugins`); without the attack plugins loaded, ``None``
    and a problem saying that ``what`` needs them."""
    try:
        return attack_cards()
    except ConfigError as exc:
        need(False, f"{what} is checked against what the attacks declare, but {exc.problems[0]}")
        return None


# Each attack plugin owns its ``Config`` and so the check of its ``[attack.<name>]`` table; the
# config layer never imports a plugin, so the ``attacks`` package hands its check in when it is
# loaded (``attacks/__init__.py``). The CLI, the workflows and the Flower App load it before they
# validate a config.
_attack_option_check: Callable[[AttackSettings], list[str]] | None = None


def use_attack_option_check(check: Callable[[AttackSettings], list[str]]) -> None:
    """Install the check of ``[attack.<name>]`` tables (called by the ``attacks`` package)."""
    global _attack_option_check
    _attack_option_check = check


def attack_option_problems(a: AttackSettings) -> list[str]:
    """The problems of the ``[attack.<name>]`` tables, found by the attacks' own check."""
    if not a.options:
        return []  # no attack is needed (and so no torch) for a config without attack tables
    if _attack_option_check is None:
        tables = ", ".join(f"[attack.{name}]" for name in a.options)
        return [
            f"the attack tables {tables} are checked by the attack plugins, which are not loaded; "
            "`import attacks` before validating this config (the CLI and the workflows do)"
        ]
    return _attack_option_check(a)


# --------------------------------------------------------------------------- what a run can use


def setting_problems(config: ExperimentConfig) -> list[str]:
    """Every number of ``config`` that is not finite or beyond what a run can use: each setting's
    declared ceiling (:func:`~feddp_eval.config.fields.ceiling_problems`), and a noise whose
    product with the clip overflows.

    Returns:
        One message per offending setting, naming it, its value and the allowed range.
    """
    problems = ceiling_problems(config)
    for at, d in (("defense", config.defense), ("defense.server", config.defense.server)):
        finite = d is not None and math.isfinite(d.noise) and math.isfinite(d.clip)
        if d is not None and finite and not math.isfinite(d.noise * d.clip):
            problems.append(f"`{at}.noise` × `{at}.clip` overflows ({d.noise:g} × {d.clip:g}); lower them")
    return problems


def merge_problems(first: Sequence[str], rest: Sequence[str]) -> list[str]:
    """``first`` then every problem of ``rest`` about a setting ``first`` does not already name."""
    named = {p.split("`")[1] for p in first if p.count("`") >= 2}
    return [*first, *(p for p in rest if p.count("`") < 2 or p.split("`")[1] not in named)]
