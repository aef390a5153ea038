"""Imprint (Fowl et al., ICLR 2022, "Robbing the Fed"): a malicious server reads tiles out of one update.

The server sent the target client the U-Net behind an imprint block
(:mod:`attacks.imprint.block`, sent by :mod:`attacks.imprint.server`): bins on the tile's mean brightness with
increasing thresholds, all fed back through one decoder column. The client's
update of that block holds, for every tile alone between two neighbouring
thresholds, ``ΔW_slot = a · x`` and ``Δb_slot = a``; the tile is their ratio. No
optimisation, no mask, no image prior.

What the attacker does with the ratios:

- it estimates the noise level of the slot evidence ``Δb_slot`` robustly (most
  slots hold no tile, so the median absolute evidence is the noise); under no
  defense that is 0;
- a slot whose evidence stands ``threshold`` noise levels above it holds a tile;
  the ``n_images`` strongest such slots become the reconstruction, each pulled
  towards the public guess by as much as its noise calls for (:func:`shrink`);
- a tile it cannot find (all slots drowned in DP noise, or two tiles sharing a
  slot) is filled with its best guess without the update: the site's public mean
  colour. So under strong noise the attack returns the prior, not noise.

Caveats (also in the threat-model text): with several local steps the update sums
gradients taken at slightly moved weights, so a tile that crosses a threshold
between steps smears across two slots (first-step approximation); Adam divides
each coordinate by its own running scale and breaks the ratio.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from attacks.base import ATTACKS, Attack, AttackConfig, Reconstruction, RunOptions, ServerView
from attacks.imprint.block import ENCODER_BIAS, ENCODER_WEIGHT
from attacks.imprint.server import MODIFICATION, ImprintServer
from feddp_eval.config import AttackSettings
from feddp_eval.errors import ConfigError, RunDirError

THREAT = "malicious server: modifies the model it sends (one round)"


@dataclass(frozen=True)
class ImprintConfig(AttackConfig):
    """Imprint settings.

    Attributes:
        threshold: A slot holds a tile when its bias evidence exceeds this many robust noise
            standard deviations (median absolute evidence / 0.6745).
    """

    threshold: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ConfigError(f"`threshold` must be a finite number > 0, but got {self.threshold}")


@dataclass(frozen=True)
class SlotEvidence:
    """The imprint block's update read slot by slot.

    Attributes:
        tiles: (k, F) ``ΔW_slot / Δb_slot`` per slot (0 where the evidence is exactly 0).
        evidence: (k,) ``Δb_slot``.
        noise: Robust estimate of the evidence's noise standard deviation.
        found: Slots judged to hold a tile, strongest first.
    """

    tiles: Tensor
    evidence: Tensor
    noise: float
    found: list[int]


def slot_ratios(weight_update: Tensor, bias_update: Tensor) -> tuple[Tensor, Tensor]:
    """Per-slot tile estimates from an imprint encoder's update.

    Slot ``i`` holds the tiles whose brightness lies between thresholds ``i`` and ``i + 1``
    (the last slot: above the last threshold). Any factor common to weights and biases
    (``−lr`` of an SGD step, a clipping scale) cancels.

    Args:
        weight_update: (k, F) change of the encoder weights.
        bias_update: (k,) change of the encoder biases.

    Returns:
        ``(tiles, evidence)``: (k, F) ratios ``ΔW_slot / Δb_slot`` (0 where ``Δb_slot`` is 0) and
        (k,) the ``Δb_slot`` each divides by.
    """
    dw, db = weight_update.double(), bias_update.double()
    dw_slot = torch.cat([dw[:-1] - dw[1:], dw[-1:]])
    db_slot = torch.cat([db[:-1] - db[1:], db[-1:]])
    empty = db_slot == 0
    ratio = dw_slot / torch.where(empty, torch.ones_like(db_slot), db_slot)[:, None]
    return torch.where(empty[:, None], torch.zeros_like(ratio), ratio).float(), db_slot.float()


def read_slots(weight_update: Tensor, bias_update: Tensor, *, threshold: float) -> SlotEvidence:
    """Slot ratios, the noise level of their evidence, and the slots that hold a tile."""
    tiles, evidence = slot_ratios(weight_update, bias_update)
    magnitude = evidence.abs()
    noise = float(magnitude.median()) / 0.6745
    floor = max(threshold * noise, 1e-6 * float(magnitude.max()))
    order = torch.argsort(magnitude, descending=True, stable=True).tolist()
    found = [i for i in order if float(magnitude[i]) > floor]
    return SlotEvidence(tiles, evidence, noise, found)


def shrink(ratio: Tensor, guess: Tensor, evidence: Tensor, noise: float) -> Tensor:
    """A slot's tile pulled towards the public guess by as much as its noise calls for.

    Each pixel of ``ΔW_slot / Δb_slot`` carries noise of about ``noise / |Δb_slot|`` (weights and
    biases get noise of one size); the tile's own spread around the guess is what the ratio's
    spread exceeds that by. The empirical-Bayes (James–Stein) weight
    ``1 − noise_px² / var(ratio − guess)`` keeps a clean read exactly (no noise: weight 1) and
    turns a read that is mostly noise back into the guess.

    Args:
        ratio: (F,) the slot's ratio.
        guess: (F,) the public guess of the tile.
        evidence: The slot's ``Δb_slot``.
        noise: The robust noise level of the evidence.
    """
    if noise == 0:
        return ratio
    pixel_noise = noise / float(evidence.abs())
    spread = float((ratio - guess).var())
    weight = max(0.0, 1.0 - pixel_noise**2 / spread) if spread > 0 else 0.0
    return guess + weight * (ratio - guess)


@ATTACKS.register("imprint")
class Imprint(Attack):
    """Analytic recovery of tiles from the update of a server-planted imprint block."""

    summary = "Fowl et al. 2022 (malicious server): imprint block of brightness bins, tiles read off exactly"
    threat = THREAT
    modifies_model = MODIFICATION
    modification_settings: ClassVar[Mapping[str, str]] = {"bins": "imprint_bins", "gain": "imprint_gain"}
    Config = ImprintConfig
    config: ImprintConfig

    @classmethod
    def model_modification(cls, settings: AttackSettings) -> ImprintServer:
        """The server that sends the imprinted model to ``target_site`` in ``target_round``."""
        if not isinstance(settings.target_round, int):  # refused by validate() before training
            raise ConfigError(f"the imprint server needs one round, but got {settings.target_round!r}")
        return ImprintServer(
            site=settings.target_site,
            round=settings.target_round,
            bins=settings.imprint_bins,
            gain=settings.imprint_gain,
        )

    def run(self, view: ServerView, options: RunOptions) -> Reconstruction:
        """Read the ``view.n_images`` strongest slots; fill tiles not found with the public guess.

        Analytic: nothing is random or iterated, so the seed, device and observer have nothing to
        act on (no convergence record is written).
        """
        progress = options.progress
        import time

        start = time.perf_counter()
        if ENCODER_WEIGHT not in view.update or ENCODER_BIAS not in view.update:
            raise RunDirError(
                "this update holds no imprint block: the imprint attack needs a run in which the "
                "server sent the target an imprinted model (train with `--attack imprint`)"
            )
        n, size = view.n_images, view.tile_size
        slots = read_slots(
            view.update[ENCODER_WEIGHT].cpu(),
            view.update[ENCODER_BIAS].cpu(),
            threshold=self.config.threshold,
        )
        if slots.tiles.shape[1] != 3 * size * size:
            raise RunDirError(
                f"the imprint block reads {slots.tiles.shape[1]} values per tile, but tiles are "
                f"3×{size}×{size}; the capture and the run's tile size disagree"
            )
        images = _fallback(view, n)
        found = slots.found[:n]
        for position, slot in enumerate(found):
            read = shrink(slots.tiles[slot], images[position].reshape(-1), slots.evidence[slot], slots.noise)
            images[position] = read.view(3, size, size).clamp(0, 1)
        if progress:
            progress(1, 1, math.nan)  # analytic: no objective
        fraction = view.foreground_prior if view.foreground_prior is not None else 0.0
        return Reconstruction(
            images=images,
            masks=torch.full((n, 1, size, size), float(fraction > 0.5)),
            objective=math.nan,
            restart_objectives=[math.nan],
            iterations=0,
            seconds=time.perf_counter() - start,
            stopped="analytic",
            details={"tiles_read": len(found)},
        )


def _fallback(view: ServerView, n: int) -> Tensor:
    """(n, 3, H, W) copies of the public guess (mean colour); mid-grey without one."""
    size = view.tile_size
    if view.prior is None:
        return torch.full((n, 3, size, size), 0.5)
    prior = view.prior.float().cpu()
    if prior.ndim == 1:
        prior = prior[:, None, None]
    return prior.expand(n, 3, size, size).clone() if prior.ndim == 3 else prior[:n].clone()
