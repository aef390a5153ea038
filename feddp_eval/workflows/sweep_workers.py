"""Moved to :mod:`feddp_eval.sweep.executors.pool` (the ``process`` executor); kept for old imports."""

from feddp_eval.sweep.executors.pool import run_parallel, terminate_as_interrupt

__all__ = ["run_parallel", "terminate_as_interrupt"]
