"""The library API: what ``feddp-eval`` commands call, usable from notebooks and other tools.

Each stage reads its inputs from, and writes its outputs into, a run directory, so a stage
can be re-run alone. The work lives in :mod:`feddp_eval.workflows`, one module per use case;
this module is the stable façade.
"""

from __future__ import annotations

from feddp_eval.config import defended_config, reference_config
from feddp_eval.workflows.attack import AttackResult, preflight_attack, run_attack
from feddp_eval.workflows.attack_run import AttackOutcome, attack_run, attack_settings
from feddp_eval.workflows.check import CheckResult, check_arms, run_check, scenario_config
from feddp_eval.workflows.rows import EXACT_PSNR, leakage_reading
from feddp_eval.workflows.sweep import SweepResult, run_sweep
from feddp_eval.workflows.train import TrainResult, malicious_server, resolve_device, run_train

__all__ = [
    "EXACT_PSNR",
    "AttackOutcome",
    "AttackResult",
    "CheckResult",
    "SweepResult",
    "TrainResult",
    "attack_run",
    "attack_settings",
    "check_arms",
    "defended_config",
    "leakage_reading",
    "malicious_server",
    "preflight_attack",
    "reference_config",
    "resolve_device",
    "run_attack",
    "run_check",
    "run_sweep",
    "run_train",
    "scenario_config",
]
