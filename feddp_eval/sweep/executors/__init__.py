"""Executors: how a sweep's points run, never what they compute.

Both run the same point function (:class:`PointWork`, given by :mod:`feddp_eval.workflows.sweep`)
and leave the same files in the sweep folder:

- :mod:`.pool` (``process``, the default): one process, or ``--jobs N`` spawned processes on this
  machine, each taking one training run and its attacks and writing into the sweep folder.
- :mod:`.ray_tasks` (``ray``): each training run and each attack a Ray task on a local Ray or a
  cluster's nodes; tasks return their files and the driver writes them, so nodes need no shared
  filesystem. Ray is imported on this path alone.

Every worker computes with :func:`task_threads` torch threads: the thread count changes float sums,
so the same thread count gives byte-identical results whichever executor ran the point.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feddp_eval.rundir.summary import TrainSummary
from feddp_eval.sweep.points import SweepPoint


@dataclass(frozen=True)
class PointWork:
    """The point function, in the two pieces an executor schedules. The fields are module-level
    functions, so they travel to a worker process or a Ray node by reference (the worker imports them).

    Attributes:
        train: ``(root, point) -> summary``: train (or reuse) the point's run in ``root / point.run_dir``.
        finish: ``(root, point, summary, lpips) -> row``: attack (or, utility-only, read) the trained run,
            writing the attack's files under ``root / point.run_dir``; the results row, paths relative to
            ``root``. It does not write ``row.json`` (the executor does, last, as the "done" marker).
        lpips: ``(net) -> metric``: the LPIPS scorer a worker builds once and reuses.
    """

    train: Callable[[Path, SweepPoint], TrainSummary]
    finish: Callable[[Path, SweepPoint, TrainSummary, Any], dict[str, Any]]
    lpips: Callable[[str], Any]


def task_threads(jobs: int) -> int:
    """Torch threads of each of ``jobs`` workers: with one, this process's own count (``--jobs 1`` runs
    the points here, with ``OMP_NUM_THREADS`` or every core); with more, the cores shared evenly."""
    if jobs <= 1:
        import torch

        return int(torch.get_num_threads())
    return max(1, (os.cpu_count() or 1) // jobs)
