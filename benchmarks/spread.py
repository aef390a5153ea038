"""How far float order moves the quantities the tests bound: seeds × thread counts × instruction sets.

A test threshold on an attack's PSNR or on the agreement of two DP modes must sit outside what another
machine computes. Thread count changes the order of reductions; the CPU's instruction set changes the
kernels themselves (an AVX2-only x86-64 CPU runs other convolution and GEMM kernels than an AVX-512 one).
Both are reproduced here: each (instruction set, threads) pair runs in a fresh process with
``OMP_NUM_THREADS`` set and, for ``avx2``, ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``.

The cases and their bounds live in ``tests/numeric_cases.py`` (the tests assert the same functions at
seed 0). The table printed here goes to ``benchmarks/RESULTS.md``, "Float-order spreads"; a bound that
any run breaks is printed as BROKEN and the script exits 1.

    python benchmarks/spread.py                               # every case, 5 seeds, threads 1 2 4, both ISAs
    python benchmarks/spread.py --cases bk-step --seeds 3
    python benchmarks/spread.py --log a.jsonl ...; python benchmarks/spread.py --table-from a.jsonl b.jsonl
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import ModuleType

from _harness import ISA_ENV, ROOT, cpu_model


def load_cases() -> ModuleType:
    """``tests/numeric_cases.py``, loaded by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location("numeric_cases", ROOT / "tests" / "numeric_cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["numeric_cases"] = module
    spec.loader.exec_module(module)
    return module


def worker(cases: list[str], seeds: list[int], threads: int) -> None:
    """Run in the child: one JSON line per (case, seed)."""
    import torch

    torch.set_num_threads(threads)
    module = load_cases()
    for case in cases:
        for seed in seeds:
            start = time.perf_counter()
            values = module.CASES[case](seed)
            seconds = time.perf_counter() - start
            print(json.dumps({"case": case, "seed": seed, "values": values, "seconds": seconds}), flush=True)


def run_config(isa: str, threads: int, cases: list[str], seeds: list[int], log: Path | None) -> list[dict]:
    """One (instruction set, threads) configuration in a fresh process; each record is also appended
    to ``log`` (JSON lines) as it arrives, so an interrupted run keeps what it measured."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), **ISA_ENV[isa], "PYTHONPATH": str(ROOT)}
    command = [sys.executable, __file__, "--worker", "--threads", str(threads)]
    command += ["--cases", ",".join(cases), "--seeds", ",".join(map(str, seeds))]
    records = []
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if not line.startswith("{"):
                continue
            record = {**json.loads(line), "isa": isa, "threads": threads}
            records.append(record)
            if log is not None:
                with log.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
            print(
                f"  {isa:6s} t={threads} {record['case']} seed {record['seed']}: "
                + ", ".join(f"{k}={v:.4g}" for k, v in record["values"].items()),
                file=sys.stderr,
                flush=True,
            )
    if child.returncode != 0:
        raise SystemExit(f"{isa}, {threads} threads failed (exit {child.returncode})")
    return records


def table(records: list[dict], bounds: dict) -> tuple[list[str], bool]:
    """Markdown rows: quantity, runs, min, max, bound, and how far the worst run sits from the bound."""
    values: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for name, value in record["values"].items():
            values[f"{record['case']}.{name}"].append(value)
    lines = [
        "| quantity | runs | min | max | bound | worst vs bound |",
        "|---|---:|---:|---:|---|---|",
    ]
    broken = False
    for name, found in sorted(values.items()):
        bound = bounds.get(name)
        if bound is None:
            lines.append(f"| {name} | {len(found)} | {min(found):.4g} | {max(found):.4g} | – | – |")
            continue
        worst = min(found) if bound.op == ">" else max(found)
        ok = all(bound.holds(v) for v in found)
        broken |= not ok
        gap = worst - bound.value if bound.op == ">" else bound.value / max(worst, 1e-300)
        verdict = (f"{gap:+.2f} above" if bound.op == ">" else f"{gap:.1f}× below") if ok else "BROKEN"
        lines.append(
            f"| {name} | {len(found)} | {min(found):.4g} | {max(found):.4g} | {bound.op} {bound.value:g} | "
            f"{verdict} |"
        )
    return lines, broken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    parser.add_argument("--threads", default="1,2,4", help="comma-separated thread counts")
    parser.add_argument("--isa", default="native,avx2", help="comma-separated: native, avx2")
    parser.add_argument("--log", type=Path, help="append every record here as it arrives (JSON lines)")
    parser.add_argument(
        "--table-from", type=Path, nargs="+", help="print the table of earlier --log files and exit"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    module = load_cases()
    cases = args.cases.split(",") if args.cases else list(module.CASES)
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.worker:
        worker(cases, seeds, int(args.threads))
        return
    unknown = [c for c in cases if c not in module.CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {', '.join(module.CASES)}")
    records: list[dict] = []
    start = time.perf_counter()
    if args.table_from:
        records = [json.loads(line) for path in args.table_from for line in path.read_text().splitlines()]
        configs = sorted({(r["isa"], r["threads"]) for r in records})
        args.seeds = ",".join(str(s) for s in sorted({r["seed"] for r in records}))
        args.isa = ",".join(sorted({isa for isa, _ in configs}))
        args.threads = ",".join(str(t) for t in sorted({t for _, t in configs}))
    for isa in [] if args.table_from else args.isa.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            records += run_config(isa, threads, cases, seeds, args.log)
    lines, broken = table(records, module.BOUNDS)
    cpu = cpu_model()
    print(
        f"{cpu}; seeds {args.seeds}; threads {args.threads}; ISA {args.isa}; "
        f"{time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.1f}"
    )
    print("\n".join(lines))
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
