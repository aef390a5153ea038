"""The ``ray`` executor: each training run and each attack is a Ray task; the driver writes the files.

A task runs the sweep's point function (:class:`~feddp_eval.sweep.executors.PointWork`) in a
temporary folder on whichever node Ray picks, and returns what it wrote (a training run's files, or
an attack's files and its results row) as its return value. This process, the driver, writes them
into the sweep folder as each task finishes (each file atomically, a run's folder renamed into place
whole, ``row.json`` last), so nodes share no filesystem with the driver and a node that dies takes
no finished point with it. A training run's files travel to its attacks through Ray's object store.

Without an address, a local Ray of ``jobs`` × :func:`task_threads` CPUs is started for the sweep and
stopped after it; with ``HOST:PORT`` or ``auto`` the sweep joins a running cluster (``ray start``).
Tasks are not retried: a task lost with its node fails the sweep with one line, and the rerun
computes only what is missing, exactly as after a Ctrl-C.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feddp_eval.config import ExperimentConfig
from feddp_eval.errors import FeddpError
from feddp_eval.rundir.summary import TrainSummary
from feddp_eval.sweep.executors import PointWork, task_threads
from feddp_eval.sweep.folder import ROW_FILE, Files, point_dir, read_files, write_files, write_run
from feddp_eval.sweep.points import SweepPoint

CONNECT_TIMEOUT_S = 5.0
"""How long to wait for a cluster's address to answer before saying it cannot be reached (Ray itself
would retry for minutes)."""
ATTACKS_DIR = "attacks"
SCRATCH_PREFIX = "feddp-sweep-task-"
INSTALL_HINT = "install it with `pip install 'feddp-eval[flower]'` (Flower's simulation extra brings Ray)"


class ClusterError(FeddpError):
    """The Ray cluster cannot be reached or used; the CLI prints one line and exits 2."""


class WorkerLostError(FeddpError):
    """A task was lost with its worker or node; the finished points are kept (exit 1: not a mistake of
    the user's, and not a regression either)."""

    exit_code = 1


def run_ray(
    out: Path,
    todo: list[list[SweepPoint]],
    *,
    jobs: int,
    address: str | None,
    work: PointWork,
    on_stage: Callable[[str], None] | None,
    finished: Callable[[str], None],
) -> None:
    """Run the groups ``todo`` as Ray tasks; ``finished`` is called with each point's key once the
    driver has written its files and its row.

    Args:
        out: The sweep folder (on the driver).
        todo: Unfinished points, grouped by training run, in the order to submit them.
        jobs: Local Ray: tasks at once. Each task declares and computes with ``task_threads(jobs)``
            CPUs (this machine's cores / jobs; with 1, this process's torch threads), as the process
            pool's workers do.
        address: ``None`` (start a local Ray), ``HOST:PORT`` or ``auto`` (join a running cluster).
        work: The point function.
        on_stage: Called with a short description as runs come back.
        finished: Called with each finished point's key.

    Raises:
        ClusterError: Ray is not installed, the cluster cannot be reached, or the sweep trains with
            the flower engine (which runs on Ray itself).
        WorkerLostError: A task was lost with its worker or node.
    """
    from feddp_eval.sweep.executors.pool import terminate_as_interrupt

    if not todo:
        return
    engines = {p.config.train.engine for group in todo for p in group}
    if "flower" in engines:
        raise ClusterError(
            'the ray executor runs the local engine only (`train.engine = "flower"` starts a Ray of '
            'its own inside each task); sweep with --executor process, or set engine = "local"'
        )
    ray = _import_ray()
    threads = task_threads(jobs)
    # SIGTERM's handler after ray.init, which installs a crash handler of its own that aborts on it.
    with _connected(ray, address, cpus=jobs * threads), terminate_as_interrupt():
        _Driver(ray, out, work, threads, jobs, on_stage, finished).run(todo)


def _import_ray() -> Any:
    try:
        import ray  # optional: the `flower` extra brings Ray; the --jobs path never imports it
    except ImportError as exc:
        raise ClusterError(
            f"--executor ray needs Ray, which is not installed ({exc}); {INSTALL_HINT}"
        ) from None
    return ray


@contextmanager
def _connected(ray: Any, address: str | None, *, cpus: int) -> Iterator[None]:
    """A local Ray of ``cpus`` CPUs, or the cluster at ``address``; shut down (our tasks with it) after."""
    import warnings

    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    resolved = None if address is None else reachable(address)
    # Ray's driver prints the cluster's events ("node … marked dead") to stdout from a thread of its
    # own; stdout is for --json alone, so they go to stderr while Ray is connected.
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        # Ray's notice that a later version stops hiding GPUs from tasks that ask for none: this sweep
        # declares a GPU for every task of a cuda config, and wants the others kept off the GPU as now.
        warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
        if resolved is None:  # "local": a new Ray even when RAY_ADDRESS names a cluster
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
        else:
            try:
                ray.init(address=resolved, **quiet)
            except ConnectionError as exc:
                raise ClusterError(f"cannot join the Ray cluster at {address!r}: {exc}") from None
        try:
            yield
        finally:
            ray.shutdown()


def reachable(address: str) -> str:
    """``address`` (``HOST:PORT`` or ``auto``) as ``HOST:PORT``, once something answers there.

    Raises:
        ClusterError: It is malformed, ``auto`` finds no cluster, or nothing answers within
            :data:`CONNECT_TIMEOUT_S` seconds.
    """
    given = address
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS") or _current_cluster() or ""
        if not address:
            raise ClusterError(
                "--address auto found no running Ray cluster on this machine (RAY_ADDRESS is unset and "
                "`ray start` wrote no address); start one with `ray start --head --port=6379`, or give "
                "--address HOST:PORT"
            )
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(
            f"--address must be HOST:PORT (the head's `ray start --head --port`) or auto, but got {given!r}"
        )
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} ({reason} within {CONNECT_TIMEOUT_S:g} s); start its "
            f"head with `ray start --head --port={port}` on {host}, or check --address"
        ) from None
    return address


def _current_cluster() -> str | None:
    """The address ``ray start --head`` recorded on this machine (Ray's default temporary folder)."""
    path = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


# --------------------------------------------------------------------------- the driver


@dataclass
class _Group:
    """One training run's points in flight: the run's result references and the points not yet back."""

    points: list[SweepPoint]
    summary: Any  # the summary, or the training task's reference to it until the run is written
    files: Any  # the run's files, by reference (``None`` once every point is back)
    trained: bool  # the run is written into the sweep folder
    waiting: set[str] = field(default_factory=set)


class _Driver:
    """Submits every task at once (Ray schedules them by their declared resources) and writes each
    result into the sweep folder as it comes back."""

    def __init__(
        self,
        ray: Any,
        out: Path,
        work: PointWork,
        threads: int,
        jobs: int,
        on_stage: Callable[[str], None] | None,
        finished: Callable[[str], None],
    ) -> None:
        self.ray, self.out, self.work, self.threads = ray, out, work, threads
        self.on_stage, self.finished = on_stage, finished
        self.jobs = jobs
        self.pending: dict[Any, tuple[str, _Group, SweepPoint]] = {}
        # Made once: Ray exports a remote function to the cluster the first time it is called.
        self.train, self.finish = ray.remote(_train_task), ray.remote(_finish_task)

    def run(self, todo: list[list[SweepPoint]]) -> None:
        self._check_fits()
        try:
            for group in todo:
                self._submit(group)
            while self.pending:
                ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=0.2)
                for ref in ready:
                    if ref in self.pending:
                        self._collect(ref)
        except BaseException:
            for ref in list(self.pending):  # stop every task still queued or running
                with contextlib.suppress(Exception):  # already finished, or the cluster is gone
                    self.ray.cancel(ref, force=True)
            raise

    def _check_fits(self) -> None:
        """Refuse a cluster where no node has the CPUs a task declares: Ray would queue it forever."""
        largest = max((n["Resources"].get("CPU", 0.0) for n in self.ray.nodes() if n["Alive"]), default=0.0)
        if largest < self.threads:
            raise ClusterError(
                f"each task declares {self.threads} CPUs (its torch threads at --jobs {self.jobs} on this "
                f"machine of {os.cpu_count()} cores) but the cluster's largest node has {largest:g}; raise "
                "--jobs (more jobs, fewer threads each), or start the nodes with more --num-cpus"
            )

    def _options(self, point: SweepPoint, **extra: Any) -> dict[str, Any]:
        gpus = 1.0 / self.jobs if point.config.device.startswith("cuda") else 0.0
        return {"num_cpus": self.threads, "num_gpus": gpus, "max_retries": 0, **extra}

    def _submit(self, points: list[SweepPoint]) -> None:
        from feddp_eval.rundir.prepare import finished_summary

        first = points[0]
        run_dir = self.out / first.run_dir
        summary = finished_summary(run_dir, first.config)
        if summary is None:
            train = self.train.options(**self._options(first, num_returns=2))
            summary_ref, files_ref = train.remote(self.work, *_plain(first), self.threads)
            group = _Group(points, summary_ref, files_ref, trained=False)
            self.pending[summary_ref] = ("run", group, first)
        else:  # trained before the sweep was interrupted: its attacks read the driver's copy
            files = read_files(run_dir)
            files = {k: v for k, v in files.items() if not k.startswith(f"{ATTACKS_DIR}/")}
            group = _Group(points, summary, self.ray.put(files), trained=True)
        for point in points:
            ref = self.finish.options(**self._options(point)).remote(
                self.work, *_plain(point), group.summary, group.files, self.threads
            )
            group.waiting.add(point.key)
            self.pending[ref] = ("point", group, point)

    def _collect(self, ref: Any) -> None:
        kind, group, point = self.pending.pop(ref)
        if kind == "run":
            self._write_run(group)
            return
        from feddp_eval.io import write_json

        row, files = self._get(ref, point)
        if not group.trained:  # its training came back in the same batch: write the run first
            self._write_run(group)

        write_files(self.out / point.run_dir, files)
        write_json(point_dir(self.out, point.key) / ROW_FILE, row)  # the "done" marker, written last
        group.waiting.discard(point.key)
        if not group.waiting:  # let the object store free the run's files
            group.files = group.summary = None
        self.finished(point.key)

    def _write_run(self, group: _Group) -> None:
        self.pending.pop(group.summary, None)
        first = group.points[0]
        summary = self._get(group.summary, first)
        write_run(self.out / first.run_dir, self._get(group.files, first))
        group.summary, group.trained = summary, True
        if self.on_stage:
            self.on_stage(f"trained {first.run_label} ({summary.seconds:.0f} s)")

    def _get(self, ref: Any, point: SweepPoint) -> Any:
        """A task's result; its own error re-raised as if raised here, a lost task as one line."""
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise
        except exceptions.RayError as exc:
            raise WorkerLostError(
                f"a Ray task of {point.label} was lost ({type(exc).__name__}: its worker or node died); "
                f"finished points are kept in {self.out}: run the same command again to compute the rest"
            ) from None


def _plain(point: SweepPoint) -> tuple[str, dict[str, Any], bool]:
    """A point as plain values (what travels to a node)."""
    from feddp_eval.config import to_dict

    return point.key, to_dict(point.config), point.utility_only


# --------------------------------------------------------------------------- on the node


def _train_task(
    work: PointWork, key: str, raw: dict[str, Any], utility_only: bool, threads: int
) -> tuple[TrainSummary, Files]:
    """A training run, in a temporary folder on this node: its summary and its files."""
    point = _point(key, raw, utility_only)
    with _scratch(threads) as root:
        summary = work.train(Path("."), point)
        return summary, read_files(root / point.run_dir)


def _finish_task(
    work: PointWork,
    key: str,
    raw: dict[str, Any],
    utility_only: bool,
    summary: TrainSummary,
    run_files: Mapping[str, bytes],
    threads: int,
) -> tuple[dict[str, Any], Files]:
    """A point's attack on its trained run (rebuilt from ``run_files`` on this node): its results row and
    the files the attack wrote, relative to the run folder."""
    point = _point(key, raw, utility_only)
    with _scratch(threads) as root:
        write_files(root / point.run_dir, run_files)
        row = work.finish(Path("."), point, summary, _lpips(work.lpips, point.config.attack.lpips_net))
        return row, read_files(root / point.run_dir, skip=run_files)


def _point(key: str, raw: dict[str, Any], utility_only: bool) -> SweepPoint:
    from feddp_eval.config import from_dict

    return SweepPoint(key, from_dict(ExperimentConfig, raw), utility_only)


@functools.cache
def _lpips(factory: Callable[[str], Any], net: str) -> Any:
    """One LPIPS scorer per worker process and backbone (Ray reuses worker processes across tasks)."""
    return factory(net)


@contextmanager
def _scratch(threads: int) -> Iterator[Path]:
    """A temporary working folder for one task, and the driver's thread count.

    The task runs with the folder as its working directory, so the paths it records (``run_dir`` in
    an attack's ``scores.json``) read ``runs/<hash>`` as on the driver, not this node's temporary path.
    Ray starts workers with one OpenMP thread; the thread count changes float sums, so the task
    computes with the count the process pool's worker would have (the flower engine does the same).
    """
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    _remove_orphaned_scratch()
    previous = os.getcwd()
    with tempfile.TemporaryDirectory(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-") as folder:
        os.chdir(folder)
        try:
            yield Path(folder)
        finally:
            os.chdir(previous)


def _remove_orphaned_scratch() -> None:
    """Scratch folders of worker processes that died (a cancelled task or a killed node leaves its
    folder behind): each is named after its process id, and removed once that process is gone."""
    import shutil

    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        pid = folder.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists() and Path("/proc/self").exists():
            shutil.rmtree(folder, ignore_errors=True)
