"""Restarts at a fraction of their cost: successive halving against running every restart (a script).

Issue #23 asks that R = 4 restarts cost at most 2× one. Batched with ``vmap`` on a CPU, four restarts
cost four times the arithmetic of one (``attack_cost.py``: 4.09×), so the per-iteration ratio cannot
get there; what can is running fewer restart-iterations. With ``[attack.inverting-gradients] halving =
true`` every restart runs the first 1/4 of the budget, then the better half (by its own best
objective, never the truth) goes on to 3/8, and the better one of those to the end: 4 restarts cost
1.875 restarts' iterations. (Rungs at 1/8 and 1/4, 1.5×, were tried first: at 1/8, inside Inverting
Gradients' first, large-step phase, the best-so-far objective picked a restart that ended worse
than the plain R = 1 run; RESULTS.md.)

On the default scenario of ``attack_cost.py`` (default U-Net at its seed-0 initialisation, 4 synthetic
64 px tiles, one local SGD step with momentum, masks known) it runs, in one process and one after
the other, Inverting Gradients with its defaults and the budget's whole ``--iterations`` (no plateau
stop, so every arm runs the same iterations) as

- R = 1;
- R = 4, every restart to the end (``halving = false``, today's default);
- R = 4 with successive halving;

and prints each arm's wall time (and its ratio to R = 1), its best objective, and the PSNR/SSIM of
its reconstruction against the truth (read here for scoring only; the attack never sees it), per
``--seeds`` attack seed. The question it answers: does halving keep what four restarts buy (the
objective and the PSNR of R = 4 run to the end) at the cost it promises?

Usage: ``python benchmarks/restart_halving.py [--iterations 500] [--seeds 0,1] [--threads 2]``
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from _harness import cpu_model
from attack_cost import make_scenario

from attacks import ATTACKS
from feddp_eval.metrics.privacy import score_reconstruction

ARMS = (("R=1", 1, False), ("R=4, all to the end", 4, False), ("R=4, halving", 4, True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--seeds", default="0,1", help="comma-separated attack seeds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arms", default="0,1,2", help="which arms (0: R=1, 1: R=4 to the end, 2: halving)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scenario = make_scenario("cpu")
    view = scenario.views[1]
    print(f"{cpu_model()}, {args.threads} thread(s), torch {torch.__version__}, load {os.getloadavg()}")
    print("| seed | arm | s | × R=1 | best objective | PSNR dB | SSIM |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for seed in (int(s) for s in args.seeds.split(",")):
        one = None
        for label, restarts, halving in (ARMS[int(a)] for a in args.arms.split(",")):
            attack = ATTACKS.create(
                "inverting-gradients", iterations=args.iterations, restarts=restarts, halving=halving
            )
            start = time.perf_counter()
            recon = attack.reconstruct(view, seed=seed)
            seconds = time.perf_counter() - start
            one = seconds if one is None else one
            scores = score_reconstruction(recon.images, scenario.images)
            print(
                f"| {seed} | {label} | {seconds:.1f} | {seconds / one:.2f} | {recon.objective:.5f} "
                f"| {scores.psnr:.2f} | {scores.ssim:.3f} |",
                flush=True,
            )
    print(f"load at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
