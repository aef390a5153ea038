"""Wall time and peak memory of the ``flower`` engine against ``local``, from 4 to 32 synthetic sites
(a script, not a test).

Each point trains ``--rounds`` rounds of FedAvg with every update captured (written to disk as each
reply arrives) in a fresh subprocess, on ``FEDDP_FLOWER_CPUS`` (default 2) Ray CPUs, and samples
the resident memory of that subprocess and every process it starts (Ray's GCS, raylet and workers
included) every 0.2 s. It prints a Markdown table and, with ``--json``, the raw numbers.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/flower_scale.py [--sites 4,8,16,32] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SETTINGS = {
    "seed": 0,
    "device": "cpu",
    "data": {"train_tiles": 8, "test_tiles": 4, "tile_size": 32},
    "model": {"depth": 1, "width": 8, "groups": 4},
    "train": {"batch_size": 4, "lr": 0.01},
}

CHILD = """
import json, sys, time
from feddp_eval.config import ExperimentConfig, from_dict, validate
from feddp_eval.pipeline import run_train
settings = json.loads(sys.argv[1])
start = time.perf_counter()
result = run_train(validate(from_dict(ExperimentConfig, settings)), run_dir=sys.argv[2], force=True)
print(json.dumps({"seconds": time.perf_counter() - start, "dice": result.summary.dice}))
"""


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants, from /proc."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue
        me = int(status.parent.name)
        parents[me] = int(fields["PPid"])
        rss[me] = int(fields.get("VmRSS", "0 kB").split()[0]) * 1024
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo.extend(child for child, parent in parents.items() if parent == current)
    return total


def measure(engine: str, sites: int, rounds: int, folder: Path) -> dict[str, float]:
    """One run in a subprocess: its wall time, Dice, peak tree RSS and capture size."""
    settings = json.loads(json.dumps(SETTINGS))
    settings["data"]["sites"] = sites
    settings["train"].update(rounds=rounds, engine=engine)
    run_dir = folder / f"{engine}-{sites}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(settings), str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    peak = 0

    def sample() -> None:
        nonlocal peak
        while child.poll() is None:
            peak = max(peak, tree_rss(child.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = child.communicate()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"{engine} with {sites} sites failed (exit {child.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    captured = sum(p.stat().st_size for p in (run_dir / "captures").rglob("*") if p.is_file())
    return {**result, "peak_mib": peak / 2**20, "captures_mib": captured / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="4,8,16,32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON too")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="flower-scale-") as folder:
        for sites in [int(s) for s in args.sites.split(",")]:
            point = {e: measure(e, sites, args.rounds, Path(folder)) for e in ("local", "flower")}
            rows.append((sites, point))
            print(f"{sites} sites done", file=sys.stderr, flush=True)
    print("| sites | local s | flower s | flower/local | local peak MiB | flower peak MiB | captures MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for sites, p in rows:
        local, flower = p["local"], p["flower"]
        print(
            f"| {sites} | {local['seconds']:.1f} | {flower['seconds']:.1f} | "
            f"{flower['seconds'] / local['seconds']:.1f}× | {local['peak_mib']:.0f} | "
            f"{flower['peak_mib']:.0f} | {flower['captures_mib']:.1f} |"
        )
        assert local["dice"] == flower["dice"], f"{sites} sites: Dice differs between engines"
    if args.json:
        print(json.dumps([{"sites": s, **p} for s, p in rows], indent=2))


if __name__ == "__main__":
    main()
