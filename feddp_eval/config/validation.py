"""One validation pass over a whole config: every problem found is reported at once."""

from __future__ import annotations

import math
from collections.abc import Callable

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
from feddp_eval.safety import merge_problems, setting_problems

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
    _model(config.model, need)
    _train(config.train, need)
    need(
        config.capture or not config.train.audit,
        "`train.audit = true` scores canaries from the captured updates, but `capture` is false; "
        "set capture = true or turn the audit off",
    )
    _defense(config.defense, need)
    _attack(config.attack, config.train, need)
    _attack_rounds(config.attack, config.train, need)
    problems += attack_option_problems(config.attack)
    problems = merge_problems(setting_problems(config), problems)
    if problems:
        raise ConfigError(problems)
    return config


def _data(d: DataConfig, m: ModelConfig, need: Need) -> None:
    pooling = 2 ** min(max(m.depth, 0), 64)  # a hostile depth must not make 2**depth hang; reported apart
    need(d.sites >= 1, f"`data.sites` must be >= 1, but got {d.sites}")
    tiles = d.train_tiles if isinstance(d.train_tiles, tuple) else (d.train_tiles,)
    need(all(n >= 1 for n in tiles), f"`data.train_tiles` must all be >= 1, but got {d.train_tiles}")
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
    need(d.test_tiles >= 1, f"`data.test_tiles` must be >= 1, but got {d.test_tiles}")
    need(d.tile_size >= 8, f"`data.tile_size` must be >= 8, but got {d.tile_size}")
    need(
        m.depth > 64 or d.tile_size % pooling == 0,
        f"`data.tile_size` ({d.tile_size}) must be divisible by 2**model.depth ({pooling})",
    )
    need(0 < d.test_fraction < 1, f"`data.test_fraction` must be in (0, 1), but got {d.test_fraction}")
    need(d.level >= 0, f"`data.level` must be a pyramid level >= 0, but got {d.level}")
    if d.format is not None or d.site_by is not None or d.level != 0:  # else no format is imported
        from feddp_eval.data.formats import format_problems

        for problem in format_problems(d.source, d.format, d.site_by, d.level):
            need(False, problem)


def _model(m: ModelConfig, need: Need) -> None:
    need(m.depth >= 1, f"`model.depth` must be >= 1, but got {m.depth}")
    need(m.width >= 1, f"`model.width` must be >= 1, but got {m.width}")
    need(m.groups >= 1, f"`model.groups` must be >= 1, but got {m.groups}")


def _train(t: TrainConfig, need: Need) -> None:
    need(t.rounds >= 1, f"`train.rounds` must be >= 1, but got {t.rounds}")
    need(
        0 < t.client_fraction <= 1, f"`train.client_fraction` must be in (0, 1], but got {t.client_fraction}"
    )
    need(t.local_epochs >= 1, f"`train.local_epochs` must be >= 1, but got {t.local_epochs}")
    need(t.local_steps >= 0, f"`train.local_steps` must be >= 0 (0 = use epochs), but got {t.local_steps}")
    need(t.batch_size >= 1, f"`train.batch_size` must be >= 1, but got {t.batch_size}")
    need(
        math.isfinite(t.lr) and 0 < t.lr <= 10,
        f"`train.lr` must be in (0, 10] (SGD on this loss diverges long before), but got {t.lr}",
    )
    need(0 <= t.momentum < 1, f"`train.momentum` must be in [0, 1), but got {t.momentum}")
    need(t.dice_weight >= 0, f"`train.dice_weight` must be >= 0, but got {t.dice_weight}")
    need(t.audit_canaries >= 2, f"`train.audit_canaries` must be >= 2, but got {t.audit_canaries}")


FLOAT32_RESOLUTION = 2.0**-23  # the gap between 1 and the next float32: parameters and updates are float32


def _defense(defense: DefenseConfig, need: Need) -> None:
    for at, dp in (("defense", defense), ("defense.server", defense.server)):
        if dp is None:
            continue
        need(math.isfinite(dp.noise) and dp.noise >= 0, f"`{at}.noise` must be >= 0, but got {dp.noise}")
        need(dp.clip > 0, f"`{at}.clip` must be > 0, but got {dp.clip}")
        need(
            not 0 < dp.noise * dp.clip < FLOAT32_RESOLUTION,
            f"`{at}.noise` = {dp.noise:g} with clip {dp.clip:g} adds noise of std {dp.noise * dp.clip:.3g}, "
            f"below float32's resolution of values of order 1 ({FLOAT32_RESOLUTION:.3g}): it is numerically "
            "zero, and its ε would describe noise that was never added; use noise = 0 for none, or a σ "
            f"with σ·clip >= {FLOAT32_RESOLUTION:.3g}",
        )
        need(0 < dp.delta < 1, f"`{at}.delta` must be in (0, 1), but got {dp.delta}")
        need(0 <= dp.prune_ratio < 1, f"`{at}.prune_ratio` must be in [0, 1), but got {dp.prune_ratio}")
        if dp.target_epsilon is not None:
            need(dp.target_epsilon > 0, f"`{at}.target_epsilon` must be > 0, but got {dp.target_epsilon}")


def _attack(a: AttackSettings, t: TrainConfig, need: Need) -> None:
    need(
        a.iterations is None or a.iterations >= 1,
        f"`attack.iterations` must be >= 1 (or empty: the budget's), but got {a.iterations}",
    )
    need(
        a.restarts is None or a.restarts >= 1,
        f"`attack.restarts` must be >= 1 (or empty: the budget's), but got {a.restarts}",
    )
    _attack_recipe(a, need)
    need(
        1 <= a.utility_seeds <= 50,
        f"`attack.utility_seeds` must be between 1 and 50 training seeds per arm, but got {a.utility_seeds}",
    )
    need(
        a.convergence_every >= 0,
        f"`attack.convergence_every` must be >= 0 iterations (0 = off), but got {a.convergence_every}",
    )
    need(
        a.target_site >= -1,
        f"`attack.target_site` must be a site index or -1 (smallest site), but got {a.target_site}",
    )
    need(a.time_budget >= 0, f"`attack.time_budget` must be >= 0 (0 = none), but got {a.time_budget}")
    need(0 <= a.plateau < 1, f"`attack.plateau` must be in [0, 1) (0 = no stop), but got {a.plateau}")
    need(a.imprint_bins >= 2, f"`attack.imprint_bins` must be >= 2, but got {a.imprint_bins}")
    need(
        math.isfinite(a.imprint_gain) and a.imprint_gain > 0,
        f"`attack.imprint_gain` must be a finite number > 0, but got {a.imprint_gain}",
    )


def _attack_rounds(a: AttackSettings, t: TrainConfig, need: Need) -> None:
    need(
        isinstance(a.target_round, int) or a.target_round == "all",
        f"`attack.target_round` must be a round number or 'all', but got {a.target_round!r}",
    )
    if isinstance(a.target_round, int):
        need(
            a.target_round >= 1,
            f"`attack.target_round` must be a round >= 1 or 'all', but got {a.target_round}",
        )
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
        a.rounds_used >= 0,
        f"`attack.rounds_used` must be >= 0 (0 = every round), but got {a.rounds_used}",
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
