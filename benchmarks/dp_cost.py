"""What DP-SGD costs per local step, for each per-sample-gradient mode (a script, not a test).

On the default model (``UNet()``), 64×64 tiles and the default batch size, it

1. checks that each mode is exact: the clipped, noise-free mean gradient it
   produces equals a one-sample-at-a-time reference (ghost clipping included,
   with the project's ``SegmentationLoss``, which honours ``reduction='none'``);
2. times, in this one process and interleaved so drift hits every mode alike,
   a plain local step (forward, backward, optimizer step) and a DP-SGD step per
   mode, and prints the median step time and the ratio DP / plain;
3. measures peak memory per mode in a fresh subprocess each: the max-RSS
   increase over the step loop on CPU (tracemalloc cannot see torch's CPU
   allocations), ``torch.cuda.max_memory_allocated`` on CUDA.

The hooks, functorch, ew and bk (the project's book-keeping mode,
``defenses/book_keeping.py``) modes run through ``DPSGDClient.local_training``,
i.e. exactly the wrapping that federated training uses; ghost is built from
Opacus' fast-gradient-clipping classes (the project has no ghost option).
The load average (``os.getloadavg()``) is printed before and after the timing:
on shared cores the ratios move with it.

Usage: ``python benchmarks/dp_cost.py [--steps 10] [--repeats 5] [--warmup 3] [--batch-size 8]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from _harness import sync
from torch import Tensor, nn

from defenses.dp_sgd import DPSGD
from feddp_eval.config import DefenseConfig, TrainConfig
from feddp_eval.federated.client import make_optimizer
from feddp_eval.federated.hooks import ClientPlan
from feddp_eval.models.loss import SegmentationLoss, segmentation_loss
from feddp_eval.models.unet import UNet, count_parameters

MODES = ("hooks", "functorch", "ew", "ghost", "bk")
TILE = 64
NOISE, CLIP = 1.0, 1.0
Step = Callable[[], None]


@dataclass
class Setup:
    device: torch.device
    batch_size: int
    train: TrainConfig
    images: Tensor
    masks: Tensor


def make_setup(device: str, batch_size: int | None = None, seed: int = 0) -> Setup:
    train = TrainConfig() if batch_size is None else TrainConfig(batch_size=batch_size)
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(train.batch_size, 3, TILE, TILE, generator=generator)
    masks = (torch.rand(train.batch_size, 1, TILE, TILE, generator=generator) < 0.3).float()
    dev = torch.device(device)
    return Setup(dev, train.batch_size, train, images.to(dev), masks.to(dev))


def fresh_model(setup: Setup) -> nn.Module:
    torch.manual_seed(0)
    return UNet().to(setup.device)


# --------------------------------------------------------------------------- steppers


def plain_stepper(setup: Setup, stack: contextlib.ExitStack) -> Step:
    model = fresh_model(setup)
    return _stepper(setup, model, make_optimizer(model, setup.train))


def _stepper(setup: Setup, model: nn.Module, optimizer: torch.optim.Optimizer) -> Step:
    """One optimizer step of ``model`` on the setup's batch: the unit every ratio is measured in."""

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        segmentation_loss(model(setup.images), setup.masks, dice_weight=setup.train.dice_weight).backward()
        optimizer.step()

    return step


def defense_stepper(
    setup: Setup,
    stack: contextlib.ExitStack,
    mode: str,
    *,
    noise: float = NOISE,
    clip: float = CLIP,
    model: nn.Module | None = None,
    lr: float | None = None,
) -> Step:
    """A DP-SGD step through the project's own ``DPSGDClient.local_training`` wrapping."""
    model = model if model is not None else fresh_model(setup)
    optimizer = (
        torch.optim.SGD(model.parameters(), lr=lr) if lr is not None else make_optimizer(model, setup.train)
    )
    defense = DPSGD(DefenseConfig(name="dp-sgd", noise=noise, clip=clip, grad_sample_mode=cast(Any, mode)))
    plan = ClientPlan(0, 6 * setup.batch_size, setup.batch_size, 6, 1, 1.0)
    defense.setup(model, [plan])
    private, private_optimizer = stack.enter_context(
        defense.client(plan).local_training(model, optimizer, torch.Generator().manual_seed(1))
    )
    return _stepper(setup, private, private_optimizer)


def ghost_stepper(
    setup: Setup,
    stack: contextlib.ExitStack,
    *,
    noise: float = NOISE,
    clip: float = CLIP,
    model: nn.Module | None = None,
    lr: float | None = None,
    criterion: Callable[..., Tensor] | None = None,
) -> Step:
    """Opacus fast gradient clipping (ghost clipping where a layer supports it)."""
    from opacus.grad_sample import GradSampleModuleFastGradientClipping
    from opacus.optimizers import DPOptimizerFastGradientClipping
    from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

    model = model if model is not None else fresh_model(setup)
    wrapped = GradSampleModuleFastGradientClipping(
        model, batch_first=True, loss_reduction="mean", max_grad_norm=clip, use_ghost_clipping=True
    )
    stack.callback(wrapped._close)
    optimizer = (
        torch.optim.SGD(model.parameters(), lr=lr) if lr is not None else make_optimizer(model, setup.train)
    )
    dp_optimizer = DPOptimizerFastGradientClipping(
        optimizer,
        noise_multiplier=noise,
        max_grad_norm=clip,
        expected_batch_size=setup.batch_size,
        loss_reduction="mean",
        generator=torch.Generator(device=setup.device).manual_seed(1),
    )
    criterion = criterion or SegmentationLoss(dice_weight=setup.train.dice_weight)
    dp_loss = DPLossFastGradientClipping(wrapped, dp_optimizer, criterion, loss_reduction="mean")

    def step() -> None:
        dp_optimizer.zero_grad(set_to_none=True)
        dp_loss(wrapped(setup.images), setup.masks).backward()
        dp_optimizer.step()

    return step


def stepper(setup: Setup, stack: contextlib.ExitStack, mode: str) -> Step:
    if mode == "plain":
        return plain_stepper(setup, stack)
    if mode == "ghost":
        return ghost_stepper(setup, stack)
    return defense_stepper(setup, stack, mode)


# --------------------------------------------------------------------------- exactness


def clipped_reference(setup: Setup, clip: float) -> tuple[list[Tensor], Tensor]:
    """Mean of the per-sample gradients clipped to ``clip`` (one sample at a time), and the norms."""
    model = fresh_model(setup)
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    norms = []
    for i in range(setup.batch_size):
        model.zero_grad(set_to_none=True)
        segmentation_loss(
            model(setup.images[i : i + 1]), setup.masks[i : i + 1], dice_weight=setup.train.dice_weight
        ).backward()
        grads = [cast(Tensor, p.grad).detach() for p in params]
        norm = torch.stack([(g.double() ** 2).sum() for g in grads]).sum().sqrt()
        factor = float((clip / (norm + 1e-6)).clamp(max=1.0))  # Opacus' clip factor
        for t, g in zip(total, grads, strict=True):
            t.add_(g * factor)
        norms.append(float(norm))
    return [t / setup.batch_size for t in total], torch.tensor(norms)


def clipped_gradient(
    setup: Setup, mode: str, clip: float, criterion: Callable[..., Tensor] | None = None
) -> list[Tensor]:
    """The gradient a mode hands to the optimizer with σ = 0: the mean of the clipped per-sample gradients."""
    model = fresh_model(setup)
    with contextlib.ExitStack() as stack:
        if mode == "ghost":
            step = ghost_stepper(setup, stack, noise=0.0, clip=clip, model=model, lr=0.0, criterion=criterion)
        else:
            step = defense_stepper(setup, stack, mode, noise=0.0, clip=clip, model=model, lr=0.0)
        step()
        return [cast(Tensor, p.grad).detach().clone() for p in model.parameters()]


def relative_error(got: list[Tensor], want: list[Tensor]) -> float:
    num = sum(float(((g - w).double() ** 2).sum()) for g, w in zip(got, want, strict=True))
    den = sum(float((w.double() ** 2).sum()) for w in want)
    return (num / den) ** 0.5


def exactness(setup: Setup) -> dict[str, float]:
    """Relative error of each mode's clipped mean gradient against the one-sample-at-a-time reference."""
    _, norms = clipped_reference(setup, clip=1e9)
    clip = float(norms.median())  # about half the samples get clipped: clipping is exercised
    reference, _ = clipped_reference(setup, clip)
    print(
        f"exactness: per-sample gradient norms {norms.min():.3g}..{norms.max():.3g}, clip C = {clip:.3g} "
        f"({int((norms > clip).sum())}/{len(norms)} samples clipped), σ = 0"
    )
    errors = {mode: relative_error(clipped_gradient(setup, mode, clip), reference) for mode in MODES}
    hooks = clipped_gradient(setup, "hooks", clip)
    errors["ghost-vs-hooks"] = relative_error(clipped_gradient(setup, "ghost", clip), hooks)

    def scalar_loss(logits: Tensor, masks: Tensor) -> Tensor:  # ignores reduction='none': the known trap
        return segmentation_loss(logits, masks, dice_weight=setup.train.dice_weight)

    errors["ghost, scalar criterion (wrong on purpose)"] = relative_error(
        clipped_gradient(setup, "ghost", clip, criterion=scalar_loss), reference
    )
    return errors


# --------------------------------------------------------------------------- timing and memory


def time_modes(setup: Setup, modes: list[str], *, warmup: int, steps: int, repeats: int) -> dict[str, float]:
    """Median seconds per step for each mode, all in this process, interleaved mode by mode."""
    times: dict[str, list[float]] = {m: [] for m in modes}
    with contextlib.ExitStack() as stack:
        steppers = {m: stepper(setup, stack, m) for m in modes}
        for m in modes:
            for _ in range(warmup):
                steppers[m]()
        sync(setup.device)
        for _ in range(repeats):
            for m in modes:
                for _ in range(steps):
                    start = time.perf_counter()
                    steppers[m]()
                    sync(setup.device)
                    times[m].append(time.perf_counter() - start)
    return {m: statistics.median(t) for m, t in times.items()}


def memory_worker(mode: str, device: str, steps: int, threads: int, batch_size: int) -> None:
    """Run in a fresh process: peak memory increase over ``steps`` steps of ``mode``, in MiB, as JSON."""
    torch.set_num_threads(threads)
    setup = make_setup(device, batch_size)
    with contextlib.ExitStack() as stack:
        step = stepper(setup, stack, mode)
        if setup.device.type == "cuda":
            sync(setup.device)
            torch.cuda.reset_peak_memory_stats(setup.device)
            before = torch.cuda.memory_allocated(setup.device)
            for _ in range(steps):
                step()
            sync(setup.device)
            peak = torch.cuda.max_memory_allocated(setup.device) - before
            what = "cuda max_memory_allocated delta"
            print(json.dumps({"mode": mode, "peak_mib": peak / 2**20, "what": what}))
            return
        # No warm-up here: the allocator keeps freed pages, so a warmed-up process shows no increase.
        # Reset the high-water mark left by the imports, then peak RSS during the steps minus RSS now.
        # VmHWM rather than getrusage's ru_maxrss: exec() carries the *parent's* peak RSS into the
        # child's ru_maxrss, which would floor every mode at the parent's size.
        if _reset_peak_rss():
            before = _status_kib("VmRSS")
            for _ in range(steps):
                step()
            peak, what = _status_kib("VmHWM") - before, "max RSS delta (VmHWM)"
        else:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
            for _ in range(steps):
                step()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
            what = "ru_maxrss delta (high-water mark not resettable: underestimates)"
        print(json.dumps({"mode": mode, "peak_mib": peak / 1024, "what": what}))


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1, 5, 15 min)"


def _reset_peak_rss() -> bool:
    """Reset the process' peak RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(f"{field}:"))


def measure_memory(mode: str, device: str, steps: int, threads: int, batch_size: int) -> float:
    flags = {"memory-worker": mode, "device": device, "memory-steps": steps}
    flags |= {"threads": threads, "batch-size": batch_size}
    command = [sys.executable, __file__, *(f"--{k}={v}" for k, v in flags.items())]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"])


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--batch-size", type=int, default=TrainConfig().batch_size, help="default: TrainConfig's batch size"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-steps", type=int, default=5)
    parser.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
    if args.memory_worker:
        memory_worker(args.memory_worker, args.device, args.memory_steps, args.threads, args.batch_size)
        return

    torch.set_num_threads(args.threads)
    setup = make_setup(args.device, args.batch_size)
    print(
        f"torch {torch.__version__}, device {args.device}, threads {args.threads}; UNet() "
        f"{count_parameters(UNet())} parameters, {TILE}×{TILE} tiles, batch {setup.batch_size}, "
        f"optimizer {setup.train.optimizer} (TrainConfig default), DP-SGD σ = {NOISE}, C = {CLIP}"
    )

    # TF32 convolutions (cuDNN's default) round inputs to 10 mantissa bits: a per-sample reference
    # loop and a batched pass then differ by ~1e-2 for reasons that have nothing to do with DP.
    # Exactness is checked in full float32; the timings below use the default (TF32 on).
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    errors = exactness(setup)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    for name, error in errors.items():
        print(f"  {name:44s} relative error {error:.2e}  {'exact' if error < 1e-4 else 'NOT exact'}")
    exact = [m for m in MODES if errors[m] < 1e-4]

    modes = ["plain", *exact]
    print(f"load average before timing: {_load()}")
    seconds = time_modes(setup, modes, warmup=args.warmup, steps=args.steps, repeats=args.repeats)
    print(f"load average after timing: {_load()}")
    memory = {
        m: measure_memory(m, args.device, args.memory_steps, args.threads, args.batch_size) for m in modes
    }

    print(
        f"\nmedian of {args.steps * args.repeats} steps per mode (after {args.warmup} warm-up steps); "
        f"peak memory = {'CUDA max allocated' if setup.device.type == 'cuda' else 'max RSS'} increase "
        f"over {args.memory_steps} steps, fresh process per mode"
    )
    print(f"{'mode':10s} {'ms/step':>9s} {'DP/plain':>9s} {'peak MiB':>9s} {'mem/plain':>10s}")
    for m in modes:
        ratio = seconds[m] / seconds["plain"]
        mem_ratio = memory[m] / memory["plain"] if memory["plain"] > 0 else float("nan")
        print(f"{m:10s} {seconds[m] * 1e3:9.1f} {ratio:9.2f} {memory[m]:9.1f} {mem_ratio:10.2f}")
    if not exact:
        print("\nno DP mode was exact: see the relative errors above")
        return
    fastest = min(exact, key=lambda m: seconds[m])
    default = DefenseConfig().grad_sample_mode
    print(
        f"\nfastest exact DP mode: {fastest} ({seconds[fastest] / seconds['plain']:.2f}× plain); "
        f"DefenseConfig default grad_sample_mode: {default}"
        + ("" if fastest == default else f"  <-- {fastest} is faster than the default")
    )


if __name__ == "__main__":
    main()
