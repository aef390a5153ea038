"""Quantities that float order moves, shared by the tests that bound them and by ``benchmarks/spread.py``.

Each case is a function of a seed that returns named floats. The tests run seed 0 on the CPU and thread
count they are given and assert each quantity against its :data:`BOUNDS` entry; ``benchmarks/spread.py``
runs every case over seeds × thread counts (1, 2, 4) × instruction sets (the machine's own, and AVX2 with
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``, which reproduces what an AVX2-only x86-64 CPU
computes) and prints how far the worst value sits from its bound. A bound sits outside the measured
spread, which is written beside it; when a case changes, re-measure and rewrite both.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import Tensor


@dataclass(frozen=True)
class Bound:
    """``quantity op value``, and the spread it was set from (``benchmarks/spread.py``'s table)."""

    op: Literal[">", "<="]
    value: float
    spread: str

    def holds(self, measured: float) -> bool:
        return measured > self.value if self.op == ">" else measured <= self.value

    def check(self, name: str, measured: float) -> None:
        assert self.holds(measured), f"{name} = {measured:.6g} breaks {self.op} {self.value:g}: {self.spread}"


# Measured with `python benchmarks/spread.py` on AMD EPYC (AVX-512), 5 seeds × the machine's own kernels and
# AVX2 kernels at 1 thread, plus AVX2 at 2 threads for DLG seeds 0–1 (threads changed no value on these
# 16 px cases); the table is in benchmarks/RESULTS.md, "Float-order spreads and the utility noise floor".
BOUNDS: dict[str, Bound] = {
    # DLG, one 16 px tile, 800 iterations, from the mean colour (the guess alone scores 19.56 dB).
    "dlg-one-tile.psnr": Bound(
        ">", 20.0, "spread 20.71–28.09 dB over 12 runs; the old bound 25 sat inside it"
    ),
    # Inverting Gradients, same tile, 500 iterations.
    "ig-one-tile.psnr": Bound(
        ">", 22.0, "spread 25.02–26.45 dB over 10 runs; the old bound 25 sat inside it"
    ),
    # One DP-SGD step in bk vs Opacus' hooks and ew modes (relative L2 distance of the updates), the worst
    # of both clipping regimes at σ = 0 and σ > 0.
    "bk-step.ew_vs_hooks": Bound("<=", 1e-4, "spread 2.7e-7–1.57e-5 over 10 runs"),  # Opacus' own gap
    "bk-step.bk_vs_ew": Bound(
        "<=", 2e-5, "spread 7.8e-8–3.5e-6 over 10 runs; the old 1e-6 sat inside it (AVX2: 3.42e-6 vs hooks)"
    ),
    # Two rounds of Poisson-sampled, noised DP-SGD: bk's saved weights against hooks'.
    "bk-run.bk_vs_hooks": Bound("<=", 1e-6, "spread 2.9e-10–2.4e-9 over 10 runs"),
}


def check(case: str, values: dict[str, float]) -> None:
    """Assert every bounded quantity of ``case`` (``values`` from one of :data:`CASES`)."""
    for name, value in values.items():
        if (bound := BOUNDS.get(f"{case}.{name}")) is not None:
            bound.check(f"{case}.{name}", value)


# --------------------------------------------------------------------------- attacks on one tile


def one_tile_view(seed: int = 0) -> tuple[Any, Tensor, Tensor]:
    """One 16 px tile's server view on a tiny smooth U-Net (GELU), its true image and the prior guess."""
    from attacks import AttackerKnowledge
    from attacks.simulate import LocalRecipe
    from attacks.view import simulated_view
    from feddp_eval.config import ModelConfig
    from feddp_eval.data.synthetic import synthesize_tiles

    tiles = synthesize_tiles(8, tile_size=16, seed=1)
    target, prior = tiles.subset([0]), tiles.images[1:].mean(dim=(0, 2, 3))
    view = simulated_view(
        ModelConfig(depth=1, width=8, groups=2, activation="gelu"),
        target.images,
        target.masks,
        LocalRecipe(batches=((0,),), lr=0.05),
        prior=prior,
        knowledge=AttackerKnowledge(mask="known"),
        foreground_prior=0.2,
        seed=seed,
    )
    return view, target.images[0], prior[:, None, None].expand(3, 16, 16)


def _attack_one_tile(name: str, seed: int, **settings: Any) -> dict[str, float]:
    from attacks import ATTACKS
    from feddp_eval.metrics.privacy import psnr

    view, truth, guess = one_tile_view()
    recon = ATTACKS.create(name, **settings).reconstruct(view, seed=seed)
    return {"psnr": psnr(truth, recon.images[0]), "prior_psnr": psnr(truth, guess)}


def dlg_one_tile(seed: int) -> dict[str, float]:
    return _attack_one_tile("dlg", seed, iterations=800, scale=20.0, lr=0.5, init="prior")


def ig_one_tile(seed: int) -> dict[str, float]:
    return _attack_one_tile("inverting-gradients", seed, iterations=500, tv_weight=0.01)


# --------------------------------------------------------------------------- book-keeping DP-SGD

BK_BATCH, BK_TILE = 4, 16


def bk_data(seed: int = 1) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(BK_BATCH, 3, BK_TILE, BK_TILE, generator=generator)
    masks = (torch.rand(BK_BATCH, 1, BK_TILE, BK_TILE, generator=generator) < 0.3).float()
    return images, masks


def bk_model(seed: int = 0) -> Any:
    from feddp_eval.models.unet import UNet

    torch.manual_seed(seed)
    return UNet(depth=1, width=8)


def bk_update(mode: str, *, clip: float, noise: float, empty: bool = False, seed: int = 0) -> list[Tensor]:
    """The parameter change of one DP-SGD step (SGD, lr 1) through ``DPSGDClient.local_training``;
    ``seed`` picks the model's initialisation (``seed``) and the batch (``seed + 1``)."""
    from defenses.dp_sgd import DPSGD
    from feddp_eval.config import DefenseConfig
    from feddp_eval.federated.hooks import ClientPlan
    from feddp_eval.models.loss import segmentation_loss

    model = bk_model(seed)
    images, masks = bk_data(seed + 1)
    defense = DPSGD(DefenseConfig(name="dp-sgd", noise=noise, clip=clip, grad_sample_mode=cast(Any, mode)))
    plan = ClientPlan(0, 2 * BK_BATCH, BK_BATCH, 2, 1, 1.0)
    defense.setup(model, [plan])
    before = [p.detach().clone() for p in model.parameters()]
    client = defense.client(plan)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    with client.local_training(model, optimizer, torch.Generator().manual_seed(3)) as (private, dp_optimizer):
        dp_optimizer.zero_grad(set_to_none=True)
        if empty:
            client.empty_step(private, dp_optimizer)
        else:
            segmentation_loss(private(images), masks).backward()
            dp_optimizer.step()
    assert client.history == [(noise, 0.5, 1)]  # the accountant saw exactly one step
    return [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)]


def relative(got: list[Tensor], want: list[Tensor]) -> float:
    """Relative L2 distance of two lists of tensors, in float64."""
    num = sum(float((g.double() - w.double()).pow(2).sum()) for g, w in zip(got, want, strict=True))
    return float((num / sum(float(w.double().pow(2).sum()) for w in want)) ** 0.5)


# Per clipping regime, the σ for which the noise σ·C per coordinate and the clipped signal are of one order.
BK_REGIMES = {"every-sample-clipped": (1e-3, 0.01), "no-clipping": (1e6, 1e-3)}


def bk_step(seed: int) -> dict[str, float]:
    """The worst gap of bk from hooks and from ew over both clipping regimes, σ = 0 and σ > 0."""
    gaps: dict[str, list[float]] = {"bk_vs_hooks": [], "bk_vs_ew": [], "ew_vs_hooks": []}
    for clip, sigma in BK_REGIMES.values():
        for noise in (0.0, sigma):
            bk, hooks, ew = (bk_update(m, clip=clip, noise=noise, seed=seed) for m in ("bk", "hooks", "ew"))
            gaps["bk_vs_hooks"].append(relative(bk, hooks))
            gaps["bk_vs_ew"].append(relative(bk, ew))
            gaps["ew_vs_hooks"].append(relative(ew, hooks))
    return {name: max(values) for name, values in gaps.items()}


def bk_run(seed: int, tmp: Path | None = None) -> dict[str, float]:
    """Poisson sampling, noise, several steps and rounds: bk's saved model against hooks'."""
    import tempfile

    from safetensors.torch import load_file

    from feddp_eval.config import ExperimentConfig, from_dict, validate
    from feddp_eval.pipeline import run_train

    raw = {
        "seed": 3 + seed,
        "device": "cpu",
        "data": {"sites": 2, "train_tiles": [6, 3], "test_tiles": 2, "tile_size": 16},
        "model": {"depth": 1, "width": 4, "groups": 2},
        "train": {"rounds": 2, "batch_size": 4, "lr": 0.01},
    }
    weights = {}
    with tempfile.TemporaryDirectory(dir=tmp) as folder:
        for mode in ("hooks", "bk"):
            mode_raw = copy.deepcopy(raw)
            mode_raw["defense"] = {"name": "dp-sgd", "noise": 0.5, "clip": 0.1, "grad_sample_mode": mode}
            config = validate(from_dict(ExperimentConfig, mode_raw))
            run_dir = run_train(config, run_dir=Path(folder) / mode).run_dir
            weights[mode] = load_file(str(run_dir / "model.safetensors"))
    names = list(weights["hooks"])
    return {"bk_vs_hooks": relative([weights["bk"][n] for n in names], [weights["hooks"][n] for n in names])}


CASES: dict[str, Callable[[int], dict[str, float]]] = {
    "dlg-one-tile": dlg_one_tile,
    "ig-one-tile": ig_one_tile,
    "bk-step": bk_step,
    "bk-run": bk_run,
}
