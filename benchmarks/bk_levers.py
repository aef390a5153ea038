"""Levers of the book-keeping DP-SGD mode (``bk``), each timed against a plain step (a script, not a test).

Same setup and interleaved timing as ``benchmarks/dp_cost.py`` (default ``UNet()``, 64×64
tiles, the default batch, σ = 1, C = 1), with ``bk`` as shipped and variants that each undo
or change one choice:

* ``unfrozen``: parameters keep ``requires_grad`` in the forward, so the backward also computes
  the (unclipped) weight gradients that are then thrown away, as Opacus' hooks mode does;
* ``unfold``: per-sample Conv2d weight gradients by unfold + a batched product (Opacus' hooks way)
  instead of one grouped convolution over the batch;
* ``ghost``: ghost norms and one clip-weighted weight gradient for every Conv2d (Bu et al.'s
  rule picks materialising for every layer of this model at 64×64);
* ``gn-varmean``: GroupNorm weight records as rstd·(Σ g·x − μ·Σ g) from ``torch.var_mean``
  instead of Σ g·x̂ with x̂ recomputed by ``F.group_norm``;
* ``scale-g``: the mean-loss factor B applied to every output gradient before the records
  instead of to the (B,) clip factors;
* ``-cl``: model and batch in ``channels_last`` memory format (for plain and bk alike).

Usage: ``python benchmarks/bk_levers.py [--threads 1] [--steps 1] [--repeats 30] [--variants ...]``
(``--steps 1``: modes alternate step by step, which shared cores need).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
import warnings

import dp_cost  # a sibling: `python benchmarks/bk_levers.py` puts this folder on sys.path
import torch
from torch import Tensor, nn

from defenses import book_keeping as bk
from feddp_eval.federated.client import make_optimizer

VARIANTS = ("plain", "ew", "bk", "unfrozen", "unfold", "ghost", "gn-varmean", "scale-g", "plain-cl", "bk-cl")


def gn_varmean(layer: nn.GroupNorm, a: Tensor, g: Tensor, rule: bk.GhostRule) -> dict[str, bk.PerSample]:
    n, channels, groups = a.shape[0], a.shape[1], layer.num_groups
    g_sum = g.reshape(n, channels, -1).sum(2)
    var, mean = torch.var_mean(a.reshape(n, groups, -1), dim=2, unbiased=False)
    per_group = channels // groups
    rstd = (var + layer.eps).rsqrt().repeat_interleave(per_group, dim=1)
    gx = (g.reshape(n, channels, -1) * a.reshape(n, channels, -1)).sum(2)
    weight = rstd * (gx - mean.repeat_interleave(per_group, dim=1) * g_sum)
    return {"weight": bk.materialised(weight), "bias": bk.materialised(g_sum)}


def conv_unfold(layer: nn.Conv2d, a: Tensor, g: Tensor, rule: bk.GhostRule) -> dict[str, bk.PerSample]:
    conv = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation}
    weight = bk._conv_unfold_samples(layer, a, g, conv)
    return {"weight": bk.materialised(weight), "bias": bk.materialised(g.sum((2, 3)))}


def scale_g(rule: bk.Rule) -> bk.Rule:
    def scaled(layer: nn.Module, a: Tensor, g: Tensor, ghost: bk.GhostRule) -> dict[str, bk.PerSample]:
        n = g.shape[0]
        records = rule(layer, a, g * n, ghost)  # the cost measured: B × every output gradient
        return {k: bk.materialised(cast_samples(r) / n) for k, r in records.items()}

    return scaled


def cast_samples(record: bk.PerSample) -> Tensor:
    assert record.samples is not None
    return record.samples


class Unfrozen(bk.BookKeepingModule):
    def forward(self, *args: object) -> object:
        self.passes.append({})
        return self._module(*(bk._needs_grad(x) for x in args))


def variant_stepper(setup: dp_cost.Setup, stack: contextlib.ExitStack, name: str) -> dp_cost.Step:
    if name in ("plain", "ew"):
        return dp_cost.stepper(setup, stack, name)
    model = dp_cost.fresh_model(setup)
    if name.endswith("-cl"):
        model = model.to(memory_format=torch.channels_last)
        images = setup.images.contiguous(memory_format=torch.channels_last)
        setup = dp_cost.Setup(setup.device, setup.batch_size, setup.train, images, setup.masks)
    optimizer = make_optimizer(model, setup.train)
    if name == "plain-cl":
        return dp_cost._stepper(setup, model, optimizer)
    rules = dict(bk.RULES)
    if name == "unfold":
        rules[nn.Conv2d] = conv_unfold
    if name == "gn-varmean":
        rules[nn.GroupNorm] = gn_varmean
    if name == "scale-g":
        rules = {t: scale_g(r) for t, r in rules.items()}
    module = (Unfrozen if name == "unfrozen" else bk.BookKeepingModule)(
        model, rules=rules, ghost="always" if name == "ghost" else "auto"
    )
    stack.callback(module._close)
    dp_optimizer = bk.BookKeepingDPOptimizer(
        optimizer,
        module=module,
        noise_multiplier=dp_cost.NOISE,
        max_grad_norm=dp_cost.CLIP,
        expected_batch_size=setup.batch_size,
        loss_reduction="mean",
        generator=torch.Generator().manual_seed(1),
    )
    return dp_cost._stepper(setup, module, dp_optimizer)


def time_variants(
    setup: dp_cost.Setup, names: list[str], *, warmup: int, steps: int, repeats: int
) -> dict[str, float]:
    """Median seconds per step of each variant, interleaved as ``dp_cost.time_modes`` does."""
    times: dict[str, list[float]] = {n: [] for n in names}
    with contextlib.ExitStack() as stack:
        steppers = {n: variant_stepper(setup, stack, n) for n in names}
        for n in names:
            for _ in range(warmup):
                steppers[n]()
        for _ in range(repeats):
            for n in names:
                for _ in range(steps):
                    start = time.perf_counter()
                    steppers[n]()
                    times[n].append(time.perf_counter() - start)
    return {n: statistics.median(t) for n, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1, help="steps per variant per repeat")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*Secure RNG turned off.*")
    torch.set_num_threads(args.threads)
    names = ["plain", *(v for v in args.variants.split(",") if v != "plain")]
    print(f"torch {torch.__version__}, threads {args.threads}, load average before {os.getloadavg()}")
    seconds = time_variants(
        dp_cost.make_setup("cpu"), names, warmup=args.warmup, steps=args.steps, repeats=args.repeats
    )
    print(f"load average after {os.getloadavg()}; median of {args.steps * args.repeats} steps per variant")
    for name in names:
        print(f"{name:12s} {seconds[name] * 1e3:8.1f} ms {seconds[name] / seconds['plain']:6.2f}× plain")


if __name__ == "__main__":
    main()
