"""What feddp-eval refuses before it computes or reports anything it cannot stand behind.

Settings are refused where they are declared: every number of an experiment must be finite and within
a range that can run (a ``clip`` of ``inf`` turns every DP update into ±inf; a ``noise`` of 1e300
overflows the accountant), each setting's range and ceiling in its field's metadata
(:mod:`feddp_eval.config.fields`). Training: a non-finite update or model stops the run. Attacks:
one whose update or weights are not finite is marked *not run* and its metrics are left absent, never the
prior's. The gate: a bound with nothing to judge is no verdict (exit 2), not a regression.
Fail fast: an unknown attack or a target site the run will not have is refused before training
(a target site the run will not sample in the target round: :func:`feddp_eval.federated.loop.
sampling_problem`, beside the sampling). Run-directory files are checked in
:mod:`feddp_eval.rundir.check`.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from feddp_eval.errors import NonFiniteError

if TYPE_CHECKING:
    from feddp_eval.config import ExperimentConfig

# --------------------------------------------------------------------------- attacks that could not run

NOT_RUN = "not run"


def unusable_view(view: Any) -> str | None:
    """Why a server view cannot be attacked (a non-finite update or weight), or ``None``."""
    from feddp_eval.federated.finite import require_finite

    try:
        require_finite(view.update, what="the captured update", fix="")
        require_finite(view.global_weights, what="the weights the server sent", fix="")
    except NonFiniteError as exc:
        return str(exc).split(";")[0]
    return None


def failed_reconstruction(stopped: str, objective: float, restart_objectives: Sequence[float]) -> str | None:
    """Why a reconstruction is no result: its loop stopped on a non-finite objective before any
    finite one (its images are still the starting guess), else ``None``."""
    finite = math.isfinite(objective) or any(math.isfinite(o) for o in restart_objectives)
    if stopped == "non-finite" and not finite:
        return "the attack objective was not finite from the first iteration"
    return None


def mark_not_run(row: dict[str, Any], reason: str) -> dict[str, Any]:
    """``row`` with every attack metric absent and ``stopped`` saying why the attack did not run."""
    from feddp_eval.schema import attack_metrics  # what an attack measures: no prior's number stands in

    return {**row, **{k: None for k in attack_metrics() if k in row}, "stopped": f"{NOT_RUN}: {reason}"}


def not_run_reason(row: Mapping[str, Any]) -> str | None:
    """Why the attack of a results row could not run, or ``None`` when it ran."""
    stopped = row.get("stopped")
    if isinstance(stopped, str) and stopped.startswith(NOT_RUN):
        return stopped[len(NOT_RUN) :].lstrip(": ") or "unknown reason"
    return None


# --------------------------------------------------------------------------- fail fast


def target_problem(config: ExperimentConfig) -> str | None:
    """Why ``attack.target_site`` cannot name a site of this run (checked before any training)."""
    from feddp_eval.data.sites import planned_sites

    n = planned_sites(config.data)
    site = config.attack.target_site
    if n is not None and n > 0 and site >= n:
        return f"`attack.target_site` is {site} but the run has {n} sites (0..{n - 1}; -1 = the smallest)"
    return None
