"""The utility noise floor: does the order of undefended and DP Dice hold across thread counts and CPUs?

For a scenario (default: `feddp-eval attack --noise 1.1`'s), trains the undefended and the defended arm at
N paired seeds, once per (instruction set, thread count), each configuration in a fresh process (the
instruction set is fixed at process start: ``avx2`` runs ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``,
what an AVX2-only x86-64 CPU computes). Prints each configuration's Dice per seed, its paired ΔDice with
the 95% t interval (the same as `feddp-eval attack` prints), and whether the sign of the mean ΔDice is
the same in every configuration. No attack runs: utility only.

    python benchmarks/utility_noise.py --seeds 3                       # the headline's default
    python benchmarks/utility_noise.py --seeds 5 --config docs/feddp-reproduction.toml --noise 1
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

from _harness import ISA_ENV, ROOT, cpu_model


def worker(config_path: str | None, noise: float, defense: str, seeds: int, out: Path) -> None:
    """In the child: each arm's pooled Dice at each seed, as one JSON line."""
    from feddp_eval.config import (
        ExperimentConfig,
        defended_config,
        load_config,
        reference_config,
        validate,
        with_overrides,
    )
    from feddp_eval.workflows.train import run_train

    base = load_config(config_path) if config_path else validate(ExperimentConfig())
    defended = defended_config(base, noise=noise, defense=defense)
    dice: dict[str, list[float]] = {"reference": [], "defended": []}
    for i in range(seeds):
        for name, arm in (("reference", reference_config(defended)), ("defended", defended)):
            config = with_overrides(arm, {"seed": arm.seed + i})
            dice[name].append(float(run_train(config, run_dir=out / f"{name}-{i}").summary.dice))
    print(json.dumps(dice), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="experiment TOML (default: the built-in default scenario)")
    parser.add_argument("--noise", type=float, default=1.1)
    parser.add_argument("--defense", default="dp-sgd")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", default="1,2,4")
    parser.add_argument("--isa", default="native,avx2")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.config, args.noise, args.defense, args.seeds, Path(args.out))
        return
    from feddp_eval.metrics.significance import paired_relative_delta

    start = time.perf_counter()
    signs, lines = set(), []
    for isa in args.isa.split(","):
        for threads in args.threads.split(","):
            env = {**os.environ, "OMP_NUM_THREADS": threads, **ISA_ENV[isa], "PYTHONPATH": str(ROOT)}
            with tempfile.TemporaryDirectory() as out:
                command = [sys.executable, __file__, "--worker", "--out", out, "--noise", str(args.noise)]
                command += ["--defense", args.defense, "--seeds", str(args.seeds)]
                command += ["--config", args.config] if args.config else []
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{isa}, {threads} threads failed:\n{done.stderr[-3000:]}")
            dice = json.loads(done.stdout.strip().splitlines()[-1])
            delta = paired_relative_delta(dice["defended"], dice["reference"])
            signs.add(delta.mean > 0)
            reference, defended = (" ".join(f"{d:.3f}" for d in dice[a]) for a in ("reference", "defended"))
            lines.append(f"| {isa} | {threads} | {reference} | {defended} | {delta.label()} |")
            print(lines[-1], file=sys.stderr, flush=True)
    cpu = cpu_model()
    print(
        f"{cpu}; {args.defense} σ={args.noise:g} vs none; {args.seeds} paired seeds; "
        f"{time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.1f}"
    )
    print("| ISA | threads | undefended Dice per seed | defended Dice per seed | ΔDice [95%] |")
    print("|---|---:|---|---|---|")
    print("\n".join(lines))
    print("order " + ("holds in every configuration" if len(signs) == 1 else "FLIPS between configurations"))


if __name__ == "__main__":
    main()
