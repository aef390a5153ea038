"""Verdicts of the leakage gate: each bound of a baseline checked against result rows, the audit's
built-in ε̂ ≤ ε bound, and JUnit XML for CI."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from feddp_eval.gate.baseline import Bound


@dataclass(frozen=True)
class Verdict:
    """A bound checked against a measured value; ``margin`` > 0 means room to spare."""

    bound: Bound
    value: float | None
    margin: float | None
    passed: bool
    message: str


def arm_attack(arm: str) -> str | None:
    """The attack an arm names (``"imprint/dp-sgd"`` → ``"imprint"``), or ``None`` for a plain defense."""
    attack = arm.rpartition("/")[0]
    return attack or None


def evaluate(
    bounds: Sequence[Bound], rows: Sequence[Mapping[str, Any]], *, attack: str | None = None
) -> list[Verdict]:
    """Check every bound against the result row of its arm.

    A plain arm (``dp-sgd``) is the row of that defense under ``attack`` (the scenario's own attack;
    any attack when ``None``); ``imprint/dp-sgd`` is the row of that defense under ``imprint``.
    """
    by_arm: dict[str, Mapping[str, Any]] = {}
    for each in rows:
        by_arm[f"{each.get('attack')}/{each['defense']}"] = each
        if attack is None or each.get("attack") == attack:
            by_arm.setdefault(str(each["defense"]), each)
    verdicts = []
    for bound in bounds:
        row = by_arm.get(bound.arm)
        value = None if row is None else row.get(bound.metric)
        if value is None:
            missing = "no result row for this arm" if row is None else f"no {bound.metric} value"
            verdicts.append(
                Verdict(
                    bound,
                    None,
                    None,
                    False,
                    f"{bound.name}: {missing} (arms present: {', '.join(sorted(by_arm)) or 'none'})",
                )
            )
            continue
        value = float(value)
        margin = value - bound.value if bound.kind == "min" else bound.value - value
        passed = margin >= -bound.tolerance
        sign = ">=" if bound.kind == "min" else "<="
        message = (
            f"arm {bound.arm}: {bound.metric} = {value:.4g} {'holds' if passed else 'breaks'} "
            f"{bound.metric} {sign} {bound.value:g} (tolerance {bound.tolerance:g})"
        )
        verdicts.append(Verdict(bound, value, margin, passed, message))
    return verdicts


def audit_verdicts(rows: Sequence[Mapping[str, Any]], *, attack: str | None = None) -> list[Verdict]:
    """The gate's built-in bound on every audited row with a claimed ε: ε̂ ≤ ε, no baseline needed.

    ε̂ is a lower bound on the ε of the code that ran (95% confidence), so ε̂ above the accountant's
    ε means the code does not do what its accountant assumes (a lost noise call, a wrong scale): a DP
    bug, not an unlucky run. The row's ``audit_violated`` holds each client to its own ε (a site's ε
    may be below the headline ε, the largest). Arms are named as in :func:`evaluate`.
    """
    verdicts: dict[str, Verdict] = {}
    for row in rows:
        claimed, estimate = row.get("epsilon"), row.get("epsilon_lower_bound")
        if claimed is None or estimate is None or row.get("audit_violated") is None:
            continue  # no audit, or nothing claimed to hold it to
        own = attack is None or row.get("attack") == attack
        arm = str(row["defense"]) if own else f"{row.get('attack')}/{row['defense']}"
        bound = Bound(arm, "epsilon_lower_bound", "max", float(claimed), 0.0)
        passed = not row["audit_violated"]
        text = f"arm {arm}: audit ε̂ = {float(estimate):.3g}"
        if passed:
            message = f"{text} ≤ ε = {float(claimed):.3g}"
        else:
            message = (
                f"{text} exceeds the accountant's ε (ε = {float(claimed):.3g} at most): the run leaks more "
                f"than its accountant allows, a DP bug (`feddp-eval audit {row.get('run_dir')}` names the "
                "clients)"
            )
        margin = float(claimed) - float(estimate)
        verdicts.setdefault(arm, Verdict(bound, float(estimate), margin, passed, message))
    return list(verdicts.values())


def junit_xml(verdicts: Sequence[Verdict], *, suite: str = "feddp-eval check") -> str:
    """JUnit XML with one test case per bound, as CI systems display it."""
    failures = sum(not v.passed for v in verdicts)
    root = ElementTree.Element("testsuite", name=suite, tests=str(len(verdicts)), failures=str(failures))
    for v in verdicts:
        case = ElementTree.SubElement(root, "testcase", classname=f"leakage.{v.bound.arm}", name=v.bound.name)
        if not v.passed:
            ElementTree.SubElement(case, "failure", message=v.message).text = v.message
    return ElementTree.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


# --------------------------------------------------------------------------- what the gate refuses


def arm_problems(arms: Sequence[str], *, defenses: Sequence[str], attacks: Sequence[str]) -> list[str]:
    """Arms of a baseline that name no registered defense (``dp-sgd``) or attack (``imprint/dp-sgd``)."""
    problems = []
    for arm in dict.fromkeys(arms):
        attack, _, defense = arm.rpartition("/")
        if defense not in defenses:
            problems.append(f"arm `{arm}` names no defense; known defenses: {', '.join(defenses)}")
        elif attack and attack not in attacks:
            problems.append(f"arm `{arm}` names no attack; known attacks: {', '.join(attacks)}")
    return problems


def require_verdicts(verdicts: Sequence[Any], rows: Sequence[Mapping[str, Any]], *, source: str) -> None:
    """Refuse to pass or fail a gate when a bound has nothing to judge: an attack that could not run,
    an arm absent from the results, or a metric they do not hold.

    Raises:
        NoVerdictError: Naming the first such bound and why (exit 2, not 1: this is no regression).
    """
    from feddp_eval.errors import NoVerdictError
    from feddp_eval.schema import not_run_reason

    for row in rows:
        reason = not_run_reason(row)
        if reason is not None:
            arm = f"{row.get('attack')}/{row.get('defense')}"
            raise NoVerdictError(f"{source}: the attack of arm {arm} could not run ({reason}); no verdict")
    for verdict in verdicts:
        if verdict.value is not None and math.isnan(verdict.value):
            raise NoVerdictError(
                f"{source}: arm {verdict.bound.arm} has {verdict.bound.metric} = NaN, which no bound can "
                "judge; re-run the attack"
            )
        if verdict.value is None:
            raise NoVerdictError(
                f"{source}: no verdict on {verdict.message}; fix the baseline or the results"
            )
