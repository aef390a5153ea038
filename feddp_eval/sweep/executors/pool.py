"""The ``process`` executor: the points in this process, or in ``jobs`` spawned worker processes, each
taking one training run and its attacks; progress comes back through a queue, Ctrl-C or SIGTERM
stops them all at once. Workers write into the sweep folder themselves (it is on this machine)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from feddp_eval.config import ExperimentConfig
from feddp_eval.sweep.executors import PointWork, task_threads
from feddp_eval.sweep.points import SweepPoint

Stage = Callable[[str], None] | None


def run_group(
    out: Path, group: list[SweepPoint], work: PointWork, lpips: Any, on_stage: Stage
) -> Iterator[str]:
    """Train (or reuse) one run and finish every point in ``group`` on it; yields finished keys."""
    from feddp_eval.io import write_json
    from feddp_eval.sweep.folder import ROW_FILE, point_dir

    first = group[0]
    if on_stage:
        on_stage(f"training {first.run_label}")
    summary = work.train(out, first)
    for point in group:
        if on_stage and not point.utility_only:
            on_stage(f"attacking {point.label}")
        row = work.finish(out, point, summary, lpips)
        write_json(point_dir(out, point.key) / ROW_FILE, row)  # the "done" marker, written last
        yield point.key


def run_pool(
    out: Path,
    todo: list[list[SweepPoint]],
    *,
    jobs: int,
    work: PointWork,
    on_stage: Stage,
    finished: Callable[[str], None],
) -> None:
    """Run the groups ``todo``: here, in plan order, when ``jobs`` is 1 or there is one group; else in
    ``jobs`` processes, longest first; ``finished`` is called with each point's key once its row is
    written."""
    from feddp_eval.sweep.points import longest_first

    if jobs <= 1 or len(todo) <= 1:
        lpips = work.lpips(todo[0][0].config.attack.lpips_net) if todo else None
        for group in todo:
            for key in run_group(out, group, work, lpips, on_stage):
                finished(key)
    else:
        run_parallel(out, longest_first(todo), jobs, on_stage, finished, work=work)


def run_parallel(
    out: Path,
    todo: list[list[SweepPoint]],
    jobs: int,
    on_stage: Stage,
    finished: Callable[[str], None],
    *,
    work: PointWork,
) -> None:
    """Run the groups in ``jobs`` spawned processes; progress comes back through a queue."""
    import multiprocessing
    import queue as queue_module
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    from feddp_eval.config import to_dict

    context = multiprocessing.get_context("spawn")
    threads = task_threads(jobs)
    with terminate_as_interrupt(), context.Manager() as manager:
        messages = manager.Queue()
        # Workers ignore Ctrl-C; on an interrupt (or a worker's error) this process stops them all at
        # once. A point cut short is simply recomputed on resume: its row was never written.
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=ignore_interrupts)
        futures = [
            pool.submit(
                _sweep_worker,
                str(out),
                [(p.key, to_dict(p.config), p.utility_only, p.swept) for p in group],
                threads,
                messages,
                work,
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
            stop_workers(pool)
            raise
        pool.shutdown()


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
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


def ignore_interrupts() -> None:
    """A worker's initializer: Ctrl-C reaches the whole foreground group, and the parent, not each
    worker, decides what stops (:func:`stop_workers`)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_workers(pool: Any) -> None:
    """End a process pool now: terminate its workers mid-task (their runs are resumable or reused,
    never half-written as finished) and drop what is queued."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _drain(messages: Any, on_stage: Stage, finished: Callable[[str], None], queue_module: Any) -> None:
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
    out: str,
    points: list[tuple[str, dict[str, Any], bool, tuple[str, ...]]],
    threads: int,
    messages: Any,
    work: PointWork,
) -> None:
    """One worker process: a training run and its attacks (configs travel as plain dicts)."""
    import torch

    from feddp_eval.config import from_dict

    torch.set_num_threads(threads)
    group = [
        SweepPoint(key, from_dict(ExperimentConfig, raw), utility, tuple(swept))
        for key, raw, utility, swept in points
    ]
    lpips = work.lpips(group[0].config.attack.lpips_net)
    for key in run_group(Path(out), group, work, lpips, lambda message: messages.put(("stage", message))):
        messages.put(("point", key))
