"""Experiment configuration: frozen dataclasses, TOML loading, overrides, one validation pass.

Defaults live in the dataclasses below and nowhere else. A TOML file mirrors the
sections (``[data]``, ``[model]``, ``[train]``, ``[defense]``); unknown keys are
errors. Command-line flags become dotted overrides (``{"train.rounds": 3}``)
applied on top of the file. :func:`validate` reports every problem at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin

from feddp_eval.errors import ConfigError
from feddp_eval.safety import merge_problems, setting_problems

Device = Literal["auto", "cpu", "cuda"]
OptimizerName = Literal["sgd", "adam"]
TileMode = Literal["crop", "resize"]
Difficulty = Literal["easy", "hard"]


@dataclass(frozen=True)
class DataConfig:
    """Where tiles come from and how they are split into sites.

    Attributes:
        source: ``"synthetic"`` for the embedded generator, or a folder of
            ``images/`` + ``masks/`` (one per site, or one split across ``sites``).
        sites: Number of institutions (synthetic data, or a single real folder to split).
        train_tiles: Training tiles per synthetic site: one number for all, or one per site.
        test_tiles: Held-out tiles per synthetic site.
        tile_size: Tile edge in pixels.
        test_fraction: Held-out share of a real folder's images, per site.
        tile_mode: How real images become tiles: ``crop`` (non-overlapping) or ``resize``.
        difficulty: Synthetic tiles: ``easy``, or ``hard`` (crowded, pale and hyperchromatic
            nuclei, dark look-alikes, blur, stain drift within a site; see ``feddp_eval.data.hard``).
    """

    source: str = "synthetic"
    sites: int = 4
    train_tiles: int | tuple[int, ...] = (48, 32, 24, 4)
    test_tiles: int = 16
    tile_size: int = 64
    test_fraction: float = 0.25
    tile_mode: TileMode = "crop"
    difficulty: Difficulty = "easy"


@dataclass(frozen=True)
class ModelConfig:
    """U-Net shape: ``depth`` poolings, ``width`` channels at full resolution (doubling per level),
    GroupNorm with up to ``groups`` groups, and the ``activation`` (``relu``, ``gelu``, ``sigmoid``)."""

    depth: int = 2
    width: int = 16
    groups: int = 8
    activation: Literal["relu", "gelu", "sigmoid"] = "relu"


@dataclass(frozen=True)
class TrainConfig:
    """FedAvg and the clients' local training.

    Attributes:
        rounds: Federated rounds.
        client_fraction: Share of sites sampled each round (at least one).
        local_epochs: Passes over the local data per round (used when ``local_steps`` is 0).
        local_steps: Fixed number of local optimizer steps per round; 0 means "use epochs".
        batch_size: Local batch size.
        optimizer: ``sgd`` (with ``momentum``) or ``adam``.
        lr: Local learning rate.
        momentum: SGD momentum (ignored by Adam).
        dice_weight: Weight of the soft Dice term in the loss (BCE + w * soft Dice).
    """

    rounds: int = 10
    client_fraction: float = 1.0
    local_epochs: int = 1
    local_steps: int = 0
    batch_size: int = 8
    optimizer: OptimizerName = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    dice_weight: float = 1.0


@dataclass(frozen=True)
class DefenseConfig:
    """The defense wrapped around training (see ``feddp-eval list defenses``).

    Attributes:
        name: Registered defense name; ``none`` is the undefended reference.
        noise: Noise multiplier σ of the chosen mechanism.
        clip: Clipping bound C (per sample for ``dp-sgd``, per update otherwise).
        delta: δ at which ε is reported.
        accountant: ``rdp`` or ``prv``.
        target_epsilon: If set, calibrate σ so the whole run spends this ε.
        prune_ratio: Share of update coordinates ``prune`` sets to zero.
        poisson_sampling: ``dp-sgd`` draws local batches by Poisson sampling, as its
            accountant assumes; turning it off voids the guarantee (for tests).
        grad_sample_mode: How Opacus computes per-sample gradients: ``ew``
            (expanded weights), ``hooks`` or ``functorch``.
    """

    name: str = "none"
    noise: float = 0.0
    clip: float = 1.0
    delta: float = 1e-5
    accountant: Literal["rdp", "prv"] = "rdp"
    target_epsilon: float | None = None
    prune_ratio: float = 0.9
    poisson_sampling: bool = True
    grad_sample_mode: Literal["ew", "hooks", "functorch"] = "ew"


AttackBudget = Literal["quick", "standard", "thorough"]


@dataclass(frozen=True)
class AttackSettings:
    """Which captured update(s) are attacked, by what, and with what knowledge.

    Attributes:
        name: Registered attack (see ``feddp-eval list attacks``).
        iterations: Optimisation steps per restart; empty: the budget's.
        restarts: Independent starts (run as one batch; the best objective wins); empty: the budget's.
        budget: Named preset of iterations and restarts (see :attr:`BUDGETS`): ``quick`` (500
            iterations, 1 restart: the default), ``standard`` (2,000 × 1) or ``thorough``
            (4,000 × 2, the order of the papers' budgets). An explicit ``iterations`` or
            ``restarts`` wins over the preset.
        mask: ``known`` (the attacker has the true masks: worst case, upper bound on
            leakage) or ``unknown`` (recovered jointly with the image).
        target_site: Site index whose update is attacked; -1 = the site with the fewest tiles.
        target_round: Round whose update is attacked, or ``"all"``: every round the site took part
            in, inverted jointly (multi-round honest server).
        rounds_used: With ``target_round = "all"``: invert only the first N rounds the site took
            part in (0 = all of them).
        time_budget: Seconds per attack (0 = no limit).
        image: ``stain`` (H&E optical-density prior) or ``pixels`` (free RGB, as in the papers);
            empty: the attack's own default.
        init: ``prior`` (start at the site's public mean colour) or ``uniform`` noise; empty: the
            attack's own default.
        recipe: ``default`` (the attack's own defaults) or, for ``inverting-gradients``, ``paper``:
            Geiping et al.'s recipe (free RGB pixels from uniform noise, signed Adam at lr 0.1, no
            colour penalty). An explicit ``image`` or ``init`` still wins.
        lpips_net: LPIPS backbone: ``alex`` or ``vgg``.
        imprint_bins: Bins of the imprint block a malicious server sends (``imprint`` attack only).
        imprint_gain: How loud the imprint bins are in the update at the same perturbation of the
            tile (``imprint`` only): louder survives more DP noise (see README for the measured
            curves); 1 is the plain block.
        convergence_every: Write the objective and PSNR every this many iterations to
            ``convergence.csv`` in the attack folder (0 = do not record).
    """

    BUDGETS: ClassVar[dict[str, tuple[int, int]]] = {
        "quick": (500, 1),
        "standard": (2000, 1),
        "thorough": (4000, 2),
    }

    name: str = "inverting-gradients"
    iterations: int | None = None
    restarts: int | None = None
    budget: AttackBudget = "quick"
    mask: Literal["known", "unknown"] = "known"
    target_site: int = -1
    target_round: int | str = 1  # a round, or "all"; checked by validate()
    rounds_used: int = 0
    time_budget: float = 0.0
    image: Literal["stain", "pixels"] | None = None
    init: Literal["prior", "uniform"] | None = None
    recipe: Literal["default", "paper"] = "default"
    lpips_net: Literal["alex", "vgg"] = "alex"
    imprint_bins: int = 128
    imprint_gain: float = 1e4
    convergence_every: int = 25

    @property
    def schedule(self) -> tuple[int, int]:
        """(iterations, restarts): the explicit settings where given, else the budget's."""
        iterations, restarts = self.BUDGETS[self.budget]
        return (
            self.iterations if self.iterations is not None else iterations,
            self.restarts if self.restarts is not None else restarts,
        )

    @property
    def multi_round(self) -> bool:
        """Whether several rounds are inverted jointly (``target_round = "all"``)."""
        return self.target_round == "all"


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything that determines a run's numbers, plus where it is written."""

    seed: int = 0
    device: Device = "auto"
    capture: bool = True
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    attack: AttackSettings = field(default_factory=AttackSettings)


# Fields that do not change a training run's numbers; left out of its config hash.
_NOT_HASHED = frozenset({"device", "attack"})

# Attacks of a malicious server, which changes the model it sends one client in one round, and so
# changes that training run: attack name → the modification. Every other attack only reads captures.
MODEL_MODIFICATIONS = {"imprint": "imprint"}


def server_modification(config: ExperimentConfig) -> dict[str, Any] | None:
    """What a malicious server sends instead of the global model (``None``: an honest server)."""
    a = config.attack
    if a.name not in MODEL_MODIFICATIONS:
        return None
    return {
        "modification": MODEL_MODIFICATIONS[a.name],
        "site": a.target_site,
        "round": a.target_round,
        "bins": a.imprint_bins,
        "gain": a.imprint_gain,
    }


C = TypeVar("C")


# --------------------------------------------------------------------------- building


def from_dict(cls: type[C], raw: Mapping[str, Any], *, where: str = "") -> C:
    """Build dataclass ``cls`` from a nested mapping; every unknown key or bad type is reported."""
    problems: list[str] = []
    value = _build(cls, raw, where, problems)
    if problems:
        raise ConfigError(problems)
    return value


def _build(cls: type[C], raw: Any, where: str, problems: list[str]) -> C:
    if not isinstance(raw, Mapping):
        problems.append(f"`{where or 'config'}` must be a table, but got {raw!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    for key in sorted(set(raw) - known):
        name = f"{where}.{key}" if where else key
        problems.append(f"unknown key `{name}`; known keys here: {', '.join(sorted(known))}")
    kwargs: dict[str, Any] = {}
    for key in known & set(raw):
        name = f"{where}.{key}" if where else key
        kwargs[key] = _coerce(hints[key], raw[key], name, problems)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # only reachable on a coercion failure already reported
        problems.append(str(exc))
        return cls()


def _coerce(hint: Any, value: Any, name: str, problems: list[str]) -> Any:
    """Check ``value`` against a field type, converting lists to tuples and ints to floats."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, name, problems)  # type: ignore[arg-type]
    origin = get_origin(hint)
    if origin is Literal:
        if value not in get_args(hint):
            choices = ", ".join(repr(a) for a in get_args(hint))
            problems.append(f"`{name}` must be one of {choices}, but got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in get_args(hint):
            trial: list[str] = []
            converted = _coerce(option, value, name, trial)
            if not trial:
                return converted
        problems.append(f"`{name}` must be {_describe(hint)}, but got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            problems.append(f"`{name}` must be a list, but got {value!r}")
            return value
        item = get_args(hint)[0]
        return tuple(_coerce(item, v, f"{name}[{i}]", problems) for i, v in enumerate(value))
    if hint is type(None):
        if value is not None:
            problems.append(f"`{name}` must be empty, but got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        problems.append(f"`{name}` must be {_describe(hint)}, but got {value!r}")
    return value


def _describe(hint: Any) -> str:
    if get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(hint) if a is not type(None))
    if get_origin(hint) is tuple:
        return f"a list of {_describe(get_args(hint)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


MAX_TOML_BYTES = 10 * 2**20


def read_toml(path: str | Path, *, what: str = "config file") -> dict[str, Any]:
    """A TOML file as a dict; a missing file or a syntax error (with its line) is a ConfigError."""
    path = Path(path)
    try:
        if path.exists() and not path.is_file():  # a folder, or a device such as /dev/zero
            raise ConfigError(f"{what} {path} is not a regular file; give a TOML file")
        if path.exists() and path.stat().st_size > MAX_TOML_BYTES:
            raise ConfigError(f"{what} {path} is over {MAX_TOML_BYTES} bytes, too large to be a config")
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(path)!r} does not exist; check the path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a UTF-8 text file (binary?); give a TOML file") from None
    except OSError as exc:  # a directory, a device, no permission
        raise ConfigError(f"{what} {path} cannot be read ({exc.strerror or exc}); give a TOML file") from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read a TOML experiment file; every problem in it is reported at once."""
    raw = read_toml(path)
    try:
        return validate(from_dict(ExperimentConfig, raw))
    except ConfigError as exc:
        raise ConfigError(exc.problems, source=str(path)) from None


def with_overrides(config: ExperimentConfig, overrides: Mapping[str, Any]) -> ExperimentConfig:
    """``config`` with dotted-key overrides applied (``{"train.rounds": 3}``); ``None`` values are skipped."""
    raw = to_dict(config)
    for dotted, value in overrides.items():
        if value is None:
            continue
        table = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            if not isinstance(table.get(part), dict):
                raise ConfigError(f"unknown override `{dotted}`")
            table = table[part]
        if leaf not in table:
            raise ConfigError(f"unknown override `{dotted}`")
        table[leaf] = list(value) if isinstance(value, tuple) else value
    return validate(from_dict(ExperimentConfig, raw))


# --------------------------------------------------------------------------- validation


def validate(config: ExperimentConfig) -> ExperimentConfig:
    """Check value ranges across the whole config and raise one error listing every problem."""
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    d, m, t, dp = config.data, config.model, config.train, config.defense
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
    need(m.depth >= 1, f"`model.depth` must be >= 1, but got {m.depth}")
    need(m.width >= 1, f"`model.width` must be >= 1, but got {m.width}")
    need(m.groups >= 1, f"`model.groups` must be >= 1, but got {m.groups}")
    need(t.rounds >= 1, f"`train.rounds` must be >= 1, but got {t.rounds}")
    need(
        0 < t.client_fraction <= 1, f"`train.client_fraction` must be in (0, 1], but got {t.client_fraction}"
    )
    need(t.local_epochs >= 1, f"`train.local_epochs` must be >= 1, but got {t.local_epochs}")
    need(t.local_steps >= 0, f"`train.local_steps` must be >= 0 (0 = use epochs), but got {t.local_steps}")
    need(t.batch_size >= 1, f"`train.batch_size` must be >= 1, but got {t.batch_size}")
    need(math.isfinite(t.lr) and t.lr > 0, f"`train.lr` must be > 0, but got {t.lr}")
    need(0 <= t.momentum < 1, f"`train.momentum` must be in [0, 1), but got {t.momentum}")
    need(t.dice_weight >= 0, f"`train.dice_weight` must be >= 0, but got {t.dice_weight}")
    need(math.isfinite(dp.noise) and dp.noise >= 0, f"`defense.noise` must be >= 0, but got {dp.noise}")
    need(dp.clip > 0, f"`defense.clip` must be > 0, but got {dp.clip}")
    need(0 < dp.delta < 1, f"`defense.delta` must be in (0, 1), but got {dp.delta}")
    need(0 <= dp.prune_ratio < 1, f"`defense.prune_ratio` must be in [0, 1), but got {dp.prune_ratio}")
    if dp.target_epsilon is not None:
        need(dp.target_epsilon > 0, f"`defense.target_epsilon` must be > 0, but got {dp.target_epsilon}")
    a = config.attack
    need(
        a.iterations is None or a.iterations >= 1,
        f"`attack.iterations` must be >= 1 (or empty: the budget's), but got {a.iterations}",
    )
    need(
        a.restarts is None or a.restarts >= 1,
        f"`attack.restarts` must be >= 1 (or empty: the budget's), but got {a.restarts}",
    )
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
    need(
        not (a.name in MODEL_MODIFICATIONS and a.multi_round),
        f"`attack.name` {a.name!r} modifies the model the server sends in one round: give that round "
        "as `attack.target_round` (a number), not 'all'",
    )
    need(
        a.recipe == "default" or a.name == "inverting-gradients",
        f"`attack.recipe = {a.recipe!r}` exists for inverting-gradients only, but the attack is "
        f"{a.name!r}; drop the recipe or pick --attack inverting-gradients",
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
    need(a.imprint_bins >= 2, f"`attack.imprint_bins` must be >= 2, but got {a.imprint_bins}")
    need(
        math.isfinite(a.imprint_gain) and a.imprint_gain > 0,
        f"`attack.imprint_gain` must be a finite number > 0, but got {a.imprint_gain}",
    )
    problems = merge_problems(setting_problems(config), problems)
    if problems:
        raise ConfigError(problems)
    return config


# --------------------------------------------------------------------------- output


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (tuples become lists, for TOML and JSON)."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def config_hash(config: ExperimentConfig, *, include_attack: bool = False) -> str:
    """SHA-256 (hex) of the fields that determine a training run's numbers (and the attack's, if asked)."""
    skip = _NOT_HASHED - ({"attack"} if include_attack else set())
    raw = {k: v for k, v in to_dict(config).items() if k not in skip}
    if (server := server_modification(config)) is not None:
        raw["server"] = server  # a malicious server trains a different run; honest hashes are unchanged
    blob = json.dumps(raw, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def to_toml(config: Any) -> str:
    """Serialise a config dataclass as TOML that :func:`load_config` reads back unchanged."""
    raw = to_dict(config)
    lines = [f"{k} = {_toml_value(v)}" for k, v in raw.items() if not isinstance(v, dict) and v is not None]
    for section, table in raw.items():
        if isinstance(table, dict):
            lines += ["", f"[{section}]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    return str(value)
