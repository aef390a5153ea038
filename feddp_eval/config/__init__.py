"""Experiment configuration: frozen dataclasses, TOML loading, derivation, one validation pass.

Defaults live in the dataclasses of :mod:`~feddp_eval.config.sections` and nowhere else. A TOML
file mirrors the sections (``[data]``, ``[model]``, ``[train]``, ``[defense]``, ``[attack]``,
and ``[attack.<name>]`` for an attack's own settings); unknown keys are errors. Command-line
flags become dotted overrides applied on top of the file (:mod:`~feddp_eval.config.derive`).
:func:`validate` reports every problem at once.
"""

from feddp_eval.config.derive import (
    ATTACK_DEFAULT_NOISE,
    UNSET,
    apply_defense,
    defended_config,
    given,
    reference_config,
    with_attack_options,
    with_overrides,
)
from feddp_eval.config.fields import ADDED, Range, setting, setting_help
from feddp_eval.config.loading import (
    MAX_TOML_BYTES,
    config_hash,
    from_dict,
    load_config,
    read_toml,
    to_dict,
    to_toml,
)
from feddp_eval.config.sections import (
    AccountantName,
    AttackBudget,
    AttackSettings,
    DataConfig,
    DefenseConfig,
    Device,
    Difficulty,
    EngineName,
    ExperimentConfig,
    LrSchedule,
    MaskKnowledge,
    ModelConfig,
    OptimizerName,
    SamplingName,
    TileMode,
    TrainConfig,
    server_modification,
)
from feddp_eval.config.validation import validate

__all__ = [
    "ADDED",
    "ATTACK_DEFAULT_NOISE",
    "MAX_TOML_BYTES",
    "UNSET",
    "AccountantName",
    "AttackBudget",
    "AttackSettings",
    "DataConfig",
    "DefenseConfig",
    "Device",
    "Difficulty",
    "EngineName",
    "ExperimentConfig",
    "LrSchedule",
    "MaskKnowledge",
    "ModelConfig",
    "OptimizerName",
    "Range",
    "SamplingName",
    "TileMode",
    "TrainConfig",
    "apply_defense",
    "config_hash",
    "defended_config",
    "from_dict",
    "given",
    "load_config",
    "read_toml",
    "reference_config",
    "server_modification",
    "setting",
    "setting_help",
    "to_dict",
    "to_toml",
    "validate",
    "with_attack_options",
    "with_overrides",
]
