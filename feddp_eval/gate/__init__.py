"""The leakage regression gate behind ``feddp-eval check``: baseline files and their bounds
(:mod:`~feddp_eval.gate.baseline`), verdicts and JUnit XML (:mod:`~feddp_eval.gate.verdicts`).
The ``check`` use case that runs a scenario and reads it against a baseline is
:mod:`feddp_eval.workflows.check`."""

from feddp_eval.gate.baseline import Baseline, Bound, load_baseline, write_baseline
from feddp_eval.gate.verdicts import (
    Verdict,
    arm_attack,
    arm_problems,
    audit_verdicts,
    evaluate,
    junit_xml,
    require_verdicts,
)

__all__ = [
    "Baseline",
    "Bound",
    "Verdict",
    "arm_attack",
    "arm_problems",
    "audit_verdicts",
    "evaluate",
    "junit_xml",
    "load_baseline",
    "require_verdicts",
    "write_baseline",
]
