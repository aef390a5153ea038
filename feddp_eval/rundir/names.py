"""The names of a run directory: its key (the folder name) and the files it holds.

A run's folder is named by the first :data:`KEY_LENGTH` hex digits of its config hash, so the same
config finds its finished run again; an attack's results folder is named by the hash that includes
the attack. Nothing here imports torch.
"""

from __future__ import annotations

from feddp_eval.config import ExperimentConfig, config_hash

KEY_LENGTH = 12
"""Hex digits of a config hash that name a run (48 bits: in practice no two configs collide)."""

# The files of a training run (``<out>/<run key>/``).
CONFIG = "config.toml"
MANIFEST = "manifest.json"
SUMMARY = "summary.json"
METRICS = "metrics.csv"
CLIENTS = "clients.csv"
MODEL = "model.safetensors"
PRIVACY = "privacy.json"
SITES = "sites.json"
RESULTS = "results.json"
"""The attack results an ``attack-<attack key>`` folder holds (one row per arm, and the scenario)."""


def short(digest: str) -> str:
    """The first :data:`KEY_LENGTH` characters of a hash, as folder names and messages show it."""
    return digest[:KEY_LENGTH]


def run_key(config: ExperimentConfig) -> str:
    """The folder name of the training run of ``config`` (its config hash, shortened)."""
    return short(config_hash(config))


def attack_key(config: ExperimentConfig) -> str:
    """The key of ``config``'s attack: its config hash with the attack settings, shortened."""
    return short(config_hash(config, include_attack=True))


def attack_dir_name(config: ExperimentConfig) -> str:
    """``attack-<attack key>``: the folder ``feddp-eval attack`` writes its results into."""
    return f"attack-{attack_key(config)}"
