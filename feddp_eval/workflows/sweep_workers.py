"""The sweep's worker processes: each takes one training run and its attacks; progress comes back
through a queue, Ctrl-C stops them all at once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from feddp_eval.config import ExperimentConfig


def run_parallel(
    out: Path,
    todo: list[list[Any]],
    jobs: int,
    on_stage: Callable[[str], None] | None,
    finished: Callable[[str], None],
    run_group: Callable[..., Iterator[str]],
) -> None:
    """Run the groups in ``jobs`` spawned processes; progress comes back through a queue.

    ``run_group(out, group, lpips, on_stage)`` computes one group and yields its finished keys; it
    must be a module-level function (it travels to each worker by reference).
    """
    import multiprocessing
    import os
    import queue as queue_module
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    from feddp_eval.config import to_dict

    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with _terminate_as_interrupt(), context.Manager() as manager:
        messages = manager.Queue()
        # Workers ignore Ctrl-C; on an interrupt (or a worker's error) this process stops them all at
        # once. A point cut short is simply recomputed on resume: its row was never written.
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_ignore_interrupts)
        futures = [
            pool.submit(
                _sweep_worker,
                run_group,
                str(out),
                [(p.key, to_dict(p.config), p.utility_only) for p in group],
                threads,
                messages,
            )
            for group in todo
        ]
        try:
            pending = set(futures)
            while pending:
                finished_now, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                _drain(messages, on_stage, finished, queue_module)
                for future in finished_now:
                    future.result()  # re-raises a worker's error here
            _drain(messages, on_stage, finished, queue_module)
        except BaseException:
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a job scheduler's stop) stops the workers as Ctrl-C does. Left to its default,
    it would end this process alone and leave the workers running on, orphaned."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ignore_interrupts() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _drain(messages: Any, on_stage: Any, finished: Callable[[str], None], queue_module: Any) -> None:
    while True:
        try:
            kind, value = messages.get_nowait()
        except queue_module.Empty:
            return
        if kind == "point":
            finished(value)
        elif on_stage:
            on_stage(value)


def _sweep_worker(
    run_group: Callable[..., Iterator[str]],
    out: str,
    points: list[tuple[str, dict[str, Any], bool]],
    threads: int,
    messages: Any,
) -> None:
    """One worker process: a training run and its attacks (configs travel as plain dicts)."""
    import torch

    from feddp_eval.config import from_dict
    from feddp_eval.metrics.perceptual import LPIPSMetric
    from feddp_eval.sweep import SweepPoint

    torch.set_num_threads(threads)
    group = [SweepPoint(key, from_dict(ExperimentConfig, raw), utility) for key, raw, utility in points]
    lpips = LPIPSMetric(group[0].config.attack.lpips_net)
    for key in run_group(Path(out), group, lpips, lambda message: messages.put(("stage", message))):
        messages.put(("point", key))
