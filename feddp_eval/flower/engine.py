"""``engine = "flower"``: a :class:`~feddp_eval.federated.loop.FedAvgJob` run by Flower.

On the Simulation Runtime (the default), one SuperNode per site runs
:func:`~feddp_eval.flower.client.build_client_app` (the ``local`` engine's client code) and the
ServerApp runs :func:`~feddp_eval.flower.server.serve` (its server code, behind the capturing
strategy). Ray runs the nodes in worker processes with one CPU each; each node reads only its own
site's tiles from a temporary folder. Inside a deployed ServerApp (:mod:`feddp_eval.flower.app`),
:func:`serving` hands the run the ServerApp's Grid instead, and the SuperNodes are real processes.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from feddp_eval.errors import ConfigError
from feddp_eval.federated.hooks import ClientPlan
from feddp_eval.federated.loop import FedAvgJob, FedAvgResult, client_plans
from feddp_eval.flower.client import ClientSpec, build_client_app, read_site, write_sites
from feddp_eval.flower.server import serve

RAY_CPUS_ENV = "FEDDP_FLOWER_CPUS"  # CPUs Ray may use (default: 2, or fewer when the machine has fewer)
_GRID: ContextVar[Grid | None] = ContextVar("feddp_flower_grid", default=None)


@contextmanager
def serving(grid: Grid) -> Iterator[None]:
    """Inside a ServerApp: ``flower`` runs started in this block use ``grid``'s connected SuperNodes."""
    token = _GRID.set(grid)
    try:
        yield
    finally:
        _GRID.reset(token)


def backend_config(device: str) -> dict[str, Any]:
    """Ray settings: one CPU per client, at most ``FEDDP_FLOWER_CPUS`` (2) in all, no dashboard."""
    cpus = int(os.environ.get(RAY_CPUS_ENV, min(2, os.cpu_count() or 1)))
    gpus = 1.0 / cpus if device.startswith("cuda") else 0.0
    return {
        "client_resources": {"num_cpus": 1, "num_gpus": gpus},
        "init_args": {"num_cpus": cpus, "include_dashboard": False, "logging_level": "ERROR"},
    }


def run_job(job: FedAvgJob) -> FedAvgResult:
    """Train ``job`` on Flower; the same result the ``local`` engine returns.

    Raises:
        ConfigError: The job needs a malicious server (``imprint``), which this engine does not run.
    """
    if job.malicious is not None:
        raise ConfigError(
            "the flower engine runs the honest server only; train the imprint attack's run with "
            '`engine = "local"`'
        )
    job.model.to(job.device)
    plans = client_plans(job.sites, job.train)
    job.hooks.setup(job.model, plans)
    if job.capture:
        for i, site in enumerate(job.sites):
            job.capture.write_ground_truth(i, site.train)
    grid = _GRID.get()
    return serve(grid, job, plans) if grid is not None else _simulate(job, plans)


@contextmanager
def _flower_warnings_only() -> Iterator[None]:
    """Flower's log at WARNING and above, on its own handler only (no echo through the root logger)."""
    logger = logging.getLogger("flwr")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        yield
    finally:
        logger.setLevel(level)
        logger.propagate = propagate


def _simulate(job: FedAvgJob, plans: list[ClientPlan]) -> FedAvgResult:
    """One SuperNode per site on the Simulation Runtime; the ServerApp runs in this process."""
    # Ray's next default (keep CUDA_VISIBLE_DEVICES when a node asks for no GPU); silences its warning.
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    outcome: dict[str, FedAvgResult] = {}
    with tempfile.TemporaryDirectory(prefix="feddp-flower-") as folder:
        write_sites(list(job.sites), Path(folder))
        spec = ClientSpec(
            model=copy.deepcopy(job.model).cpu(),
            train=job.train,
            hooks=job.hooks,
            plans=plans,
            seed=job.seed,
            device=str(job.device),
            load_site=functools.partial(read_site, Path(folder)),
            threads=torch.get_num_threads(),
        )
        server_app = ServerApp()

        @server_app.main()
        def _main(grid: Grid, context: Context) -> None:
            outcome["result"] = serve(grid, job, plans)

        with _flower_warnings_only():
            run_simulation(
                server_app=server_app,
                client_app=build_client_app(spec),
                num_supernodes=len(job.sites),
                backend_config=backend_config(str(job.device)),  # type: ignore[arg-type]
            )
    if "result" not in outcome:
        raise RuntimeError("the Flower simulation ended without a result; see its log above")
    return outcome["result"]
