"""Deriving one config from another: dotted overrides, the defense flags, the reference arm.

One rule each, used by every command and by the library:

- :func:`with_overrides`: a value of :data:`UNSET` leaves the field alone; anything else,
  ``None`` included, is set (so ``None`` clears an optional field such as ``target_epsilon``).
  :func:`given` turns "flag not given" (``None`` from the command line) into :data:`UNSET`.
- :func:`apply_defense`: what ``--defense``, ``--noise`` and ``--target-epsilon`` mean.
- :func:`reference_config`: the undefended arm of an experiment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from feddp_eval.config.loading import from_dict, to_dict
from feddp_eval.config.sections import ExperimentConfig
from feddp_eval.config.validation import validate
from feddp_eval.errors import ConfigError


class _Unset:
    """The type of :data:`UNSET`."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = _Unset()
"""An override that leaves its field as it is (a flag that was not given)."""


def given(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Command-line overrides: an option left at ``None`` (not given) becomes :data:`UNSET`."""
    return {key: UNSET if value is None else value for key, value in overrides.items()}


def with_overrides(
    config: ExperimentConfig, overrides: Mapping[str, Any], *, check: bool = True
) -> ExperimentConfig:
    """``config`` with dotted-key overrides applied (``{"train.rounds": 3}``), validated.

    A value of :data:`UNSET` leaves the field unchanged; ``None`` sets it to ``None``. With
    ``check=False`` the result is not validated: a command that derives its config in several steps
    validates the end once (:func:`feddp_eval.cli.app.experiment`).
    """
    raw = to_dict(config)
    for dotted, value in overrides.items():
        if value is UNSET:
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
    derived = from_dict(ExperimentConfig, raw)
    return validate(derived) if check else derived


def apply_defense(
    config: ExperimentConfig,
    *,
    defense: str | None = None,
    noise: float | None = None,
    target_epsilon: float | None = None,
    default_noise: float | None = None,
    check: bool = True,
    **settings: Any,
) -> ExperimentConfig:
    """``config`` with the defense flags applied (``None``: not given); the one place they are read.

    - ``defense`` names the defense; without it, the config's defense stays.
    - ``noise`` (σ > 0) or ``target_epsilon`` with no defense named anywhere means ``dp-sgd``.
    - ``default_noise`` is the σ used when nothing about the defense was given or configured
      (``feddp-eval attack`` compares against σ = 1.1 by default).
    - ``settings``: further ``[defense]`` fields (``clip``, ``delta``, ...); ``None``: not given.
    - ``check``: validate the result (as :func:`with_overrides`).
    """
    named = defense or config.defense.name
    untouched = defense is None and noise is None and target_epsilon is None and named == "none"
    if untouched and config.defense.target_epsilon is None and default_noise is not None:
        noise = default_noise
    if named == "none" and defense is None and ((noise or 0) > 0 or target_epsilon is not None):
        named = "dp-sgd"
    overrides = {"defense.name": named, "defense.noise": noise, "defense.target_epsilon": target_epsilon}
    overrides |= {f"defense.{key}": value for key, value in settings.items()}
    return with_overrides(config, given(overrides), check=check)


def reference_config(config: ExperimentConfig) -> ExperimentConfig:
    """The undefended arm of the same experiment: no defense (client or server side), no noise, no
    calibration target."""
    return with_overrides(
        config, {"defense.name": "none", "defense.noise": 0.0, "defense.target_epsilon": None}
    )


def defended_config(
    config: ExperimentConfig, *, noise: float | None, defense: str | None, check: bool = True
) -> ExperimentConfig:
    """The defended arm of ``feddp-eval attack``: :func:`apply_defense` with σ = 1.1 by default."""
    return apply_defense(
        config, defense=defense, noise=noise, default_noise=ATTACK_DEFAULT_NOISE, check=check
    )


ATTACK_DEFAULT_NOISE = 1.1
"""σ of ``feddp-eval attack``'s defended arm when nothing else is said: the textbook DP-SGD value."""


def with_attack_options(
    config: ExperimentConfig, options: Mapping[str, Any], *, check: bool = True
) -> ExperimentConfig:
    """``config`` with settings of the chosen attack's own ``Config`` (``tv_weight=0.1``) merged into
    its ``[attack.<name>]`` table; checked like the table (``check``: as :func:`with_overrides`)."""
    if not options:
        return config
    name = config.attack.name
    merged = {**config.attack.options, name: {**config.attack.options.get(name, {}), **options}}
    return with_overrides(config, {"attack.options": merged}, check=check)
