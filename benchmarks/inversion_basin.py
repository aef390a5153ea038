"""Does the honest server's inversion come back to the truth from near it? (a script, not a test)

The diagnosis of issue #22: an optimisation attack that ends below the attacker's prior is weak
either because its objective's minimum is not the truth (regulariser bias, blind directions) or
because its optimiser does not reach that minimum. This script tells the two apart. On the default
scenario's data (site 3 of the embedded generator at experiment seed 0, 64 px tiles, the U-Net
freshly initialised as in round 1, one local SGD step of lr 0.05, masks known) it starts the
inversion from

* the truth plus Gaussian noise at 40, 30 and 25 dB PSNR, and
* the painted-mask guess (the attacker's prior without the update),

for one tile and for four, with the regularisers (TV and the mean-colour penalty) on and off, and
reports where each run ends: PSNR against the truth and the objective, beside the objective *at the
truth* (``obj@truth``). Reading a row:

* end PSNR below the start while ``end obj < obj@truth``: the objective prefers a wrong image
  (its minimum is not the truth: fix the objective or the regulariser);
* end PSNR below the start while ``end obj > obj@truth``: the optimiser lost its way (fix the
  optimiser);
* end PSNR above the start: the basin holds from there.

Two more views of the same question:

* ``--ranking``: the objective (regularisers off, free pixels) at images of known distance from the
  truth: the truth plus invisible noise (60–30 dB), the painted guess plus the truth's own
  low-frequency correction (the guess's error averaged over 2/8/16 px blocks), the guess, uniform
  noise. An objective that measures closeness ranks them by PSNR.
* ``--detail truth,guess``: how well an image far from the truth can match the update: a fixed
  coarse field (the truth's, an oracle, or the guess's, blurred by ``--sigma`` px) plus free detail
  started from the guess's, searched as in ``--coarse``; its end objective beside the truth plus
  noise (``--ranking``) says whether the objective can tell the truth from a nearby wrong image.
* ``--coarse``: a coarse-to-fine search from the painted guess, optimising only a correction at
  1/16, then 1/8 ... of the resolution (48 unknowns per tile at 1/16), with Adam and, optionally, a
  softplus surrogate of the ReLU annealed from β = 5 to 1000 (``--smooth 5``; 0 = the ReLU itself).
  It keeps, per stage, the iterate of lowest true (ReLU) objective.

``--weights RUN/captures/round-NNNN/global.safetensors`` asks every view the same question at a
later round's global weights (a trained model) instead of the round-1 initialisation; the update is
replayed from them on the same tiles.

Only this benchmark reads the truth (to build the start and to score); the attack does not.

Usage: ``OMP_NUM_THREADS=1 python benchmarks/inversion_basin.py [--iterations 150] [--refine 150]
[--methods old,new] [--tiles 1,4] [--ranking] [--coarse --smooth 5 --objective cosine]
[--weights RUN/captures/round-0010/global.safetensors]``
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from attacks import ATTACKS, ServerView
from attacks.simulate import LocalRecipe, flatten, simulate_update
from attacks.view import simulated_view
from feddp_eval.config import DataConfig, ModelConfig
from feddp_eval.data.sites import build_sites
from feddp_eval.metrics.privacy import mask_painted_prior, score_reconstruction
from feddp_eval.models.unet import UNet
from feddp_eval.rundir.check import check_tensor_file, expected_shapes
from feddp_eval.seeding import derive_seed
from feddp_eval.workflows.train import public_statistics

LR = 0.05  # the default scenario's local learning rate; its momentum is void on a first step
# The two objective/optimiser pairs compared: today's default (cosine, signed Adam) and the strong
# default of issue #22 (relative L2 on the update, signed Adam, then L-BFGS with a line search).
METHODS: dict[str, dict[str, Any]] = {
    "old": {"objective": "cosine", "lr": 0.03, "tv_weight": 0.3},
    "new": {"objective": "l2", "per_layer": True, "lr": 0.01, "tv_weight": 0.02},
    # L-BFGS alone (one Adam step of 1e-4, then the refinement): does a line-search method converge?
    "lbfgs": {"objective": "l2", "per_layer": True, "refine_float64": True, "iterations": 1, "lr": 1e-4},
}
REGULARISERS: dict[str, dict[str, Any]] = {
    "on": {},
    "off": {"tv_weight": 0.0, "colour_weight": 0.0, "refine_tv_weight": 0.0},
}


@dataclass(frozen=True)
class Scenario:
    """The attacked client's tiles (truth), the server's view and the painted-mask guess."""

    images: Tensor  # (N, 3, 64, 64)
    masks: Tensor  # (N, 1, 64, 64)
    view: ServerView
    painted: Tensor  # (N, 3, 64, 64)


def default_scenario(n_tiles: int, seed: int = 0, weights: Path | None = None) -> Scenario:
    """Site 3 of the default synthetic data with ``n_tiles`` training tiles, attacked in round 1, or,
    given ``weights`` (a captured round's ``global.safetensors``), at those global weights: the update
    is then replayed from them on the same tiles, exactly as the client computed it."""
    data = DataConfig(train_tiles=(48, 32, 24, n_tiles))
    site = build_sites(data, seed=derive_seed(seed, "data"))[3]
    public = public_statistics(site)
    images, masks = site.train.images, site.train.masks
    painted = mask_painted_prior(
        masks, torch.tensor(public["foreground_rgb"]), torch.tensor(public["background_rgb"])
    )
    recipe = LocalRecipe(batches=(tuple(range(n_tiles)),), lr=LR, momentum=0.9)
    view = simulated_view(
        ModelConfig(),
        images,
        masks,
        recipe,
        prior=painted,
        foreground_prior=public["foreground_fraction"],
        seed=derive_seed(seed, "model-init"),  # the global weights of round 1
    )
    if weights is not None:
        view = _at_weights(view, weights, images)
    return Scenario(images, masks, view, painted)


def _at_weights(view: ServerView, path: Path, images: Tensor) -> ServerView:
    """``view`` with its global weights read from ``path`` and the update of ``images`` replayed from
    them."""
    check_tensor_file(path, expected_shapes(view.model), what="the global weights")
    global_weights = load_file(path)
    model = UNet.from_config(view.model)
    update = simulate_update(model, global_weights, images, view.masks, view.recipe)
    return replace(view, global_weights=global_weights, update={k: v.detach() for k, v in update.items()})


def noisy(images: Tensor, db: float, seed: int) -> Tensor:
    """``images`` plus Gaussian noise whose MSE is 10^(-db/10), clamped to [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator) * 10 ** (-db / 20)
    return (images + noise).clamp(0, 1)


def psnr(images: Tensor, truth: Tensor) -> float:
    return float(score_reconstruction(images, truth).psnr)


def run_case(scenario: Scenario, start: Tensor, settings: dict[str, Any]) -> dict[str, float]:
    """One inversion from ``start``; its end PSNR, end objective, objective at the truth, seconds."""
    attack = ATTACKS.create("inverting-gradients", **settings)
    # The refinement's objective (its TV weight may differ) is what the returned objective is in.
    at_truth = attack.objective_at(scenario.view, scenario.images, refining=bool(settings.get("refine")))
    began = time.perf_counter()
    recon = attack.reconstruct(scenario.view, start=start)
    return {
        "end_psnr": psnr(recon.images, scenario.images),
        "end_objective": recon.objective,
        "objective_at_truth": at_truth,
        "seconds": time.perf_counter() - began,
    }


def segment_profile(scenario: Scenario, settings: dict[str, Any]) -> list[tuple[float, float, float]]:
    """(t, PSNR, objective) on the straight line from the painted guess (t = 0) to the truth (t = 1),
    free pixels, no regulariser: the shape of the objective's basin around the truth. A smooth
    objective grows like the squared distance (×100 per 20 dB); one with ReLU kinks like the distance
    (×10 per 20 dB)."""
    attack = ATTACKS.create("inverting-gradients", **{**settings, **REGULARISERS["off"], "image": "pixels"})
    rows = []
    for t in (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.999):
        images = scenario.painted + t * (scenario.images - scenario.painted)
        rows.append((t, psnr(images, scenario.images), attack.objective_at(scenario.view, images)))
    return rows


def low_frequency(images: Tensor, block: int) -> Tensor:
    """``images`` averaged over ``block``-px blocks and bilinearly upsampled back."""
    return F.interpolate(F.avg_pool2d(images, block), scale_factor=block, mode="bilinear")


def ranking_images(scenario: Scenario) -> list[tuple[str, Tensor]]:
    """Images of known distance from the truth, nearest first (the truth is read to build them)."""
    truth, painted = scenario.images, scenario.painted
    rows = [(f"truth + noise {db} dB", noisy(truth, db, seed=db)) for db in (60, 50, 40, 30)]
    for block in (2, 8, 16):
        corrected = (painted + low_frequency(truth - painted, block)).clamp(0, 1)
        rows.append((f"guess + true correction /{block}", corrected))
    # The truth with only its intensity changed: the first convolution feeds GroupNorm, which removes
    # each group's mean and scale, so the update barely sees a brightness or contrast change.
    for c in (0.95, 1.05):
        rows.append((f"truth × {c:g} (brightness)", (truth * c).clamp(0, 1)))
    mean = truth.mean(dim=(2, 3), keepdim=True)
    for c in (0.8, 1.2):
        rows.append((f"truth, contrast × {c:g} about its mean", (mean + c * (truth - mean)).clamp(0, 1)))
    # The ceiling of an attack that recovers every fine detail and keeps the guess's coarse field: the
    # guess's error above 8 px (a Gaussian of σ = 8 px) with the truth's detail below it.
    detail = truth - blur(truth, 8)
    rows.append(("guess's coarse field + true detail (σ 8 px)", (blur(painted, 8) + detail).clamp(0, 1)))
    rows.append(("painted guess", painted))
    rows.append(("uniform noise", torch.rand(truth.shape, generator=torch.Generator().manual_seed(1))))
    return rows


def affine_fit(images: Tensor, truth: Tensor) -> Tensor:
    """``images`` with each tile's channels mapped by the least-squares ``a·x + b`` onto ``truth``'s (an
    oracle): what an image would score if only its per-channel brightness and contrast were wrong."""
    x, y = images.flatten(2), truth.flatten(2)
    xc, yc = x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
    a = (xc * yc).sum(-1, keepdim=True) / xc.pow(2).sum(-1, keepdim=True).clamp_min(1e-12)
    return (a * xc + y.mean(-1, keepdim=True)).view_as(images).clamp(0, 1)


def blur(images: Tensor, sigma: float) -> Tensor:
    """A separable Gaussian blur of standard deviation ``sigma`` px (reflected at the border)."""
    radius = int(3 * sigma)
    taps = torch.exp(-((torch.arange(-radius, radius + 1, dtype=images.dtype) / sigma) ** 2) / 2)
    taps = taps / taps.sum()
    channels = images.shape[1]
    across = taps.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    images = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="reflect"), across, groups=channels)
    down = taps.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    return F.conv2d(F.pad(images, (0, 0, radius, radius), mode="reflect"), down, groups=channels)


class SmoothReLU(nn.Module):
    """ReLU, or softplus(βx)/β while ``beta`` is set (shared by every instance): a surrogate whose
    update varies smoothly with the image, annealed towards the ReLU as β grows."""

    beta: float | None = None

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x) if SmoothReLU.beta is None else F.softplus(x, beta=SmoothReLU.beta)


def _smoothable(model: nn.Module) -> nn.Module:
    for name, child in model.named_children():
        if isinstance(child, nn.ReLU):
            setattr(model, name, SmoothReLU())
        else:
            _smoothable(child)
    return model


def update_distance(view: ServerView, objective: str) -> Callable[[Tensor], Tensor]:
    """The objective of the searches below: the distance of the update ``images`` would give (through a
    copy of the model whose ReLUs :class:`SmoothReLU` can smooth) from the captured one, ``cosine`` or
    the relative squared L2 per layer (``l2``)."""
    model = _smoothable(UNet.from_config(view.model))
    names = list(view.update)
    weights = {k: v.detach() for k, v in view.global_weights.items()}
    target = flatten(view.update, names)
    blocks = [(target[i:j], slice(i, j)) for i, j in _spans(view.update, names)]

    def distance(images: Tensor) -> Tensor:
        update = flatten(simulate_update(model, weights, images, view.masks, view.recipe), names)
        if objective == "cosine":
            return 1 - F.cosine_similarity(update, target, dim=0)
        return sum(((update[s] - t).pow(2).sum() / t.pow(2).sum()) for t, s in blocks) / len(blocks)

    return distance


def annealed_step(
    optimiser: torch.optim.Optimizer,
    distance: Callable[[Tensor], Tensor],
    image: Callable[[Tensor], Tensor],
    z: Tensor,
    i: int,
    iterations: int,
    *,
    lr: float,
    smooth: float,
) -> None:
    """Step ``i`` of ``iterations`` on ``distance(image(z))``: the surrogate's β at its point from
    ``smooth`` to 1000 (0: the ReLU), the step size cosine-decayed from ``lr``."""
    SmoothReLU.beta = smooth * (1000 / smooth) ** (i / iterations) if smooth else None
    for group in optimiser.param_groups:
        group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / iterations))
    optimiser.zero_grad()
    distance(image(z)).backward()
    optimiser.step()


def coarse_search(
    scenario: Scenario, *, stages: tuple[int, ...], smooth: float, objective: str, iterations: int, lr: float
) -> list[dict[str, float]]:
    """Coarse-to-fine from the painted guess: per stage, Adam (cosine-decayed step) on a correction at
    1/``block`` of the resolution, the surrogate annealed from β = ``smooth`` to 1000 (0: ReLU);
    each stage keeps its iterate (or start) of lowest ReLU objective and hands it to the next."""
    distance = update_distance(scenario.view, objective)
    correction, rows, began = torch.zeros_like(scenario.painted), [], time.perf_counter()
    for block in stages:
        z = F.avg_pool2d(correction, block).requires_grad_(True)

        def image(z: Tensor, block: int = block) -> Tensor:
            return (scenario.painted + F.interpolate(z, scale_factor=block, mode="bilinear")).clamp(0, 1)

        optimiser = torch.optim.Adam([z], lr=lr)
        with torch.no_grad():  # the stage's start competes too: a stage never ends worse than it began
            best = (float(distance(image(z))), z.detach().clone())
        for i in range(iterations):
            annealed_step(optimiser, distance, image, z, i, iterations, lr=lr, smooth=smooth)
            if (i + 1) % 20 == 0 or i + 1 == iterations:
                SmoothReLU.beta = None
                with torch.no_grad():
                    value = float(distance(image(z)))
                if value < best[0]:
                    best = (value, z.detach().clone())
        with torch.no_grad():
            correction = image(best[1]) - scenario.painted
        rows.append(
            {
                "block": block,
                "objective": best[0],
                "psnr": psnr(scenario.painted + correction, scenario.images),
                "affine_psnr": psnr(affine_fit(image(best[1]), scenario.images), scenario.images),
                "seconds": time.perf_counter() - began,
            }
        )
    SmoothReLU.beta = None
    return rows


def detail_search(
    scenario: Scenario, *, coarse_from: str, sigma: float, smooth: float, iterations: int, lr: float
) -> dict[str, float]:
    """How well can an image far from the truth match the update? The image is a fixed coarse field
    (the Gaussian blur of σ px of the truth, an oracle no attacker has, or of the guess) plus free
    detail, started from the guess's detail; Adam (cosine-decayed step) on the cosine objective, the
    ReLU smoothed as in :func:`coarse_search`. Reports the end's PSNR against the truth, its (ReLU)
    objective, and how far it moved from its start (PSNR of end against start)."""
    distance = update_distance(scenario.view, "cosine")
    coarse = blur(scenario.images if coarse_from == "truth" else scenario.painted, sigma)

    def image(z: Tensor) -> Tensor:
        return (coarse + z - blur(z, sigma)).clamp(0, 1)

    z = scenario.painted.clone().requires_grad_(True)
    start = image(z).detach()
    optimiser, began = torch.optim.Adam([z], lr=lr), time.perf_counter()
    for i in range(iterations):
        annealed_step(optimiser, distance, image, z, i, iterations, lr=lr, smooth=smooth)
    SmoothReLU.beta = None
    with torch.no_grad():
        end = image(z)
        return {
            "start_psnr": psnr(start, scenario.images),
            "start_objective": float(distance(start)),
            "end_psnr": psnr(end, scenario.images),
            "end_objective": float(distance(end)),
            "moved_psnr": psnr(end, start),
            "seconds": time.perf_counter() - began,
        }


def _spans(update: dict[str, Tensor], names: list[str]) -> list[tuple[int, int]]:
    """(start, end) of each parameter in the flattened update."""
    spans, start = [], 0
    for name in names:
        spans.append((start, start + update[name].numel()))
        start += update[name].numel()
    return spans


def _load() -> list[str]:
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=150, help="signed-Adam iterations")
    parser.add_argument("--refine", type=int, default=150, help="L-BFGS iterations of the new method")
    parser.add_argument("--methods", default="old,new")
    parser.add_argument("--tiles", default="1,4")
    parser.add_argument("--image", default="stain", help="image model of every method")
    parser.add_argument("--regs", default="on,off")
    parser.add_argument("--segment", action="store_true", help="only the painted→truth line profile")
    parser.add_argument("--starts", default="40,30,25,painted")
    parser.add_argument("--ranking", action="store_true", help="only the objective at known distances")
    parser.add_argument("--coarse", action="store_true", help="only the coarse-to-fine search")
    parser.add_argument("--detail", default="", help="only the detail search, coarse field of: truth,guess")
    parser.add_argument("--sigma", type=float, default=8.0, help="--detail: blur of the coarse field, px")
    parser.add_argument("--smooth", type=float, default=5.0, help="--coarse: first softplus β (0 = ReLU)")
    parser.add_argument("--objective", default="l2", help="--coarse: l2 (relative, per layer) or cosine")
    parser.add_argument("--stages", default="16,8,4,2,1", help="--coarse: block sizes, coarse first")
    parser.add_argument("--lr", type=float, default=0.02, help="--coarse: Adam step on the correction")
    parser.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="global weights of a captured round (RUN/captures/round-NNNN/global.safetensors) to attack at, "
        "instead of the round-1 initialisation",
    )
    args = parser.parse_args()
    print(
        f"threads {torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}); "
        f"load {_load()}"
    )
    if args.ranking:
        print("| tiles | image | PSNR dB | cosine | relative L2 per layer |\n|---|---|---|---|---|")
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = default_scenario(n, weights=args.weights)
            free = {**REGULARISERS["off"], "image": "pixels"}
            judges = [ATTACKS.create("inverting-gradients", **{**METHODS[m], **free}) for m in ("old", "new")]
            for label, images in ranking_images(scenario):
                values = " | ".join(f"{j.objective_at(scenario.view, images):.3g}" for j in judges)
                print(f"| {n} | {label} | {psnr(images, scenario.images):.1f} | {values} |", flush=True)
        return
    if args.detail:
        print(
            "| tiles | coarse field of | smooth β0 | start dB | start obj | end dB | end obj | moved dB | s |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = default_scenario(n, weights=args.weights)
            for source in args.detail.split(","):
                r = detail_search(
                    scenario,
                    coarse_from=source,
                    sigma=args.sigma,
                    smooth=args.smooth,
                    iterations=args.iterations,
                    lr=args.lr,
                )
                cells = [f"{r['start_psnr']:.1f}", f"{r['start_objective']:.3g}", f"{r['end_psnr']:.1f}"]
                cells += [f"{r['end_objective']:.3g}", f"{r['moved_psnr']:.1f}", f"{r['seconds']:.0f}"]
                print(f"| {n} | {source} | {args.smooth:g} | {' | '.join(cells)} |", flush=True)
        return
    if args.coarse:
        columns = ("tiles", "objective", "smooth β0", "block", "end obj (ReLU)", "end dB", "oracle affine dB")
        print("| " + " | ".join((*columns, "guess dB", "s")) + " |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = default_scenario(n, weights=args.weights)
            stages = tuple(int(b) for b in args.stages.split(","))
            guess = psnr(scenario.painted, scenario.images)
            rows = coarse_search(
                scenario,
                stages=stages,
                smooth=args.smooth,
                objective=args.objective,
                iterations=args.iterations,
                lr=args.lr,
            )
            for r in rows:
                print(
                    f"| {n} | {args.objective} | {args.smooth:g} | 1/{r['block']} | {r['objective']:.3g} | "
                    f"{r['psnr']:.1f} | {r['affine_psnr']:.1f} | {guess:.1f} | {r['seconds']:.0f} |",
                    flush=True,
                )
        return
    if args.segment:
        print("| tiles | method | t | PSNR dB | objective |\n|---|---|---|---|---|")
        for n in (int(t) for t in args.tiles.split(",")):
            scenario = default_scenario(n, weights=args.weights)
            for method in args.methods.split(","):
                for t, db, value in segment_profile(scenario, METHODS[method]):
                    print(f"| {n} | {method} | {t:g} | {db:.1f} | {value:.3g} |", flush=True)
        return
    header = "| tiles | method | reg | start | start dB | end dB | end obj | obj@truth | s |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for n in (int(t) for t in args.tiles.split(",")):
        scenario = default_scenario(n, weights=args.weights)
        wanted = args.starts.split(",")
        starts = [
            (f"truth+noise {db} dB", noisy(scenario.images, float(db), seed=int(db)))
            for db in wanted
            if db != "painted"
        ]
        if "painted" in wanted:
            starts.append(("painted guess", scenario.painted))
        for method in args.methods.split(","):
            for reg in args.regs.split(","):
                reg_settings = REGULARISERS[reg]
                settings = {
                    "iterations": args.iterations,
                    "image": args.image,
                    **METHODS[method],
                    **({"refine": args.refine} if method == "lbfgs" else {}),
                    **reg_settings,
                }
                for label, start in starts:
                    r = run_case(scenario, start, settings)
                    print(
                        f"| {n} | {method} | {reg} | {label} | {psnr(start, scenario.images):.1f} | "
                        f"{r['end_psnr']:.1f} | {r['end_objective']:.3g} | {r['objective_at_truth']:.3g} | "
                        f"{r['seconds']:.0f} |",
                        flush=True,
                    )
    print(f"load {_load()}")


if __name__ == "__main__":
    main()
