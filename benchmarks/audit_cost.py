"""What the one-run audit adds to a training run's time (a script, not a test).

On the default experiment (4 sites of 48/32/24/4 tiles of 64 px, the default U-Net, 10 rounds,
captures written), it times, interleaved so that drift on shared cores hits every case alike:

1. the plain training run (``run_fedavg`` behind the defense, with capture);
2. the same run with the audit on (``AuditedHooks``, ``--canaries`` canaries), plus writing the
   canary record and scoring the run from its captures (:func:`feddp_eval.audit.finish_audit`).

for the undefended arm and DP-SGD (σ = 1.1). The overhead is the ratio of the medians over
``--repeats`` minus one; the issue's target is at most 20% on 2 cores. The audited run's
training and scoring times are printed apart, with the process' CPU time / wall time ("busy").

Usage: ``python benchmarks/audit_cost.py [--repeats 3] [--canaries 1000] [--threads 2]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from defenses import build_defense
from feddp_eval.audit import AuditedHooks, finish_audit
from feddp_eval.config import DefenseConfig, ExperimentConfig
from feddp_eval.data.sites import build_sites
from feddp_eval.federated.capture import CaptureWriter
from feddp_eval.federated.hooks import TrainingHooks
from feddp_eval.federated.loop import run_fedavg
from feddp_eval.models.unet import UNet
from feddp_eval.seeding import derive_seed

TARGET = 0.20  # the target: the audit adds at most 20% to a training run


def _train(defense: DefenseConfig, canaries: int) -> tuple[float, float]:
    """(training seconds, audit record + scoring seconds) of one default run; 0 canaries: no audit."""
    config = ExperimentConfig()
    hooks: TrainingHooks = build_defense(defense)
    if canaries:
        hooks = AuditedHooks(hooks, canaries=canaries, seed=config.seed)
    sites = build_sites(config.data, seed=derive_seed(config.seed, "data"))
    torch.manual_seed(derive_seed(config.seed, "model-init"))
    model = UNet.from_config(config.model)
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        result = run_fedavg(
            sites,
            model,
            config.train,
            seed=config.seed,
            device=torch.device("cpu"),
            hooks=hooks,
            capture=CaptureWriter(run_dir),
        )
        trained = time.perf_counter()
        finish_audit(Path(run_dir), hooks, result.privacy_summary())
        return trained - start, time.perf_counter() - trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--canaries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    arms = {"none": DefenseConfig(), "dp-sgd σ=1.1": DefenseConfig(name="dp-sgd", noise=1.1)}
    for label, defense in arms.items():
        plain: list[float] = []
        audited: list[float] = []
        scoring: list[float] = []
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(args.repeats):
            plain.append(_train(defense, 0)[0])
            train_s, score_s = _train(defense, args.canaries)
            audited.append(train_s + score_s)
            scoring.append(score_s)
        busy = (time.process_time() - cpu) / (time.perf_counter() - wall)
        base, with_audit = statistics.median(plain), statistics.median(audited)
        overhead = with_audit / base - 1
        print(
            f"{label:>14}: plain {base:6.2f} s, audited {with_audit:6.2f} s "
            f"(scoring {statistics.median(scoring):.2f} s), overhead {overhead:+.1%} "
            f"[target ≤ {TARGET:.0%}: {'met' if overhead <= TARGET else 'NOT met'}], m = {args.canaries}, "
            f"busy {busy:.2f}"
        )


if __name__ == "__main__":
    main()
