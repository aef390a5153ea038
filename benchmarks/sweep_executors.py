"""Points per minute of ``feddp-eval sweep`` with 1, 2 and 4 local workers: the process pool
(``--jobs N``) against Ray (``--executor ray --jobs N``, a local Ray of N task slots), a script, not
a test.

Each run is a fresh sweep of the same tiny grid (16 px tiles, one round, ``--iterations`` attack
steps; the undefended reference plus DP-SGD at each ``--noise``) in a fresh folder and subprocess,
so the wall time includes process start-up, Ray's start and each worker's imports: the cost a user
sees. It prints a Markdown table with the load average before and after each run (the machine may
be shared), and checks that every run wrote the same results.csv as the first one with the same
thread count (cores / jobs).

Usage: ``OMP_NUM_THREADS=1 python benchmarks/sweep_executors.py [--jobs 1,2,4] [--noise 0.01,0.1,1.1]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

ROOT = Path(__file__).parents[1]
TINY = """seed = 3
device = "cpu"
[data]
sites = 2
train_tiles = [6, 3]
test_tiles = 2
tile_size = 16
[model]
depth = 1
width = 4
groups = 2
[train]
rounds = 1
batch_size = 4
lr = 0.01
"""


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _threads(jobs: int) -> int:
    """Torch threads per worker, as ``feddp_eval.sweep.executors.task_threads`` gives them to the sweep
    (with one job: the sweep process's own count, which OMP_NUM_THREADS sets)."""
    cores = os.cpu_count() or 1
    return int(os.environ.get("OMP_NUM_THREADS", cores)) if jobs <= 1 else max(1, cores // jobs)


def _sweep(
    folder: Path, config: Path, args: argparse.Namespace, jobs: int, executor: str
) -> dict[str, object]:
    out = folder / f"{executor}-{jobs}"
    command = [sys.executable, "-m", "feddp_eval.cli", "sweep", "-c", str(config), "--out", str(out)]
    command += ["--noise", args.noise, "--iterations", str(args.iterations), "--jobs", str(jobs)]
    command += ["--executor", executor, "--json"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    before = _load()
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{executor} --jobs {jobs} failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    return {
        "executor": executor,
        "jobs": jobs,
        "threads": _threads(jobs),
        "points": report["computed"],
        "seconds": seconds,
        "per_minute": 60 * report["computed"] / seconds,
        "load_before": before,
        "load_after": _load(),
        "results": (out / "results.csv").read_bytes(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--executors", default="process,ray")
    parser.add_argument("--noise", default="0.01,0.1,1.1", help="the DP-SGD noise levels of the grid")
    parser.add_argument("--iterations", type=int, default=50, help="attack iterations per point")
    parser.add_argument("--json", action="store_true", help="also print the raw numbers")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sweep-executors-") as name:
        folder = Path(name)
        config = folder / "tiny.toml"
        config.write_text(TINY)
        for jobs in (int(j) for j in args.jobs.split(",")):
            for executor in args.executors.split(","):
                rows.append(_sweep(folder, config, args, jobs, executor))
                print(f"{executor} --jobs {jobs}: {rows[-1]['seconds']:.1f} s", file=sys.stderr)
    first: dict[int, bytes] = {}
    print(f"cores: {os.cpu_count()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}\n")
    print(
        "| executor | jobs | threads per worker | points | wall s | points / min "
        "| load before → after | results.csv |"
    )
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for row in rows:
        reference = first.setdefault(cast(int, row["threads"]), cast(bytes, row["results"]))
        same = "same bytes" if row["results"] == reference else "DIFFERS"
        print(
            f"| {row['executor']} | {row['jobs']} | {row['threads']} | {row['points']} "
            f"| {row['seconds']:.1f} | {row['per_minute']:.1f} "
            f"| {row['load_before']} → {row['load_after']} | {same} |"
        )
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "results"} for r in rows], indent=2))


if __name__ == "__main__":
    main()
