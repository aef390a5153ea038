"""How an attack represents the tiles it optimises.

``pixels`` is the classic choice (DLG, Inverting Gradients): free RGB values,
projected back to the valid box [0, 1] after every step. ``stain`` is an H&E
prior: each pixel is ``exp(-(c_H · h + c_E · e))`` (Beer–Lambert in optical
density, Ruifrok–Johnston) with non-negative concentrations ``c`` and stain
vectors ``h``, ``e`` that start at the published reference and are learned per
reconstruction. Two unknowns per pixel instead of three, and colours that a
stained slide can have: every value lies in (0, 1] by construction.

Both start either from uniform noise or from the site's public mean colour
(the same guess the prior baseline scores), plus small noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

# Ruifrok & Johnston (2001) H&E optical-density vectors, public knowledge.
REFERENCE_HE = torch.tensor([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]])
REFERENCE_HE = REFERENCE_HE / REFERENCE_HE.norm(dim=1, keepdim=True)

ImageKind = Literal["pixels", "stain"]
InitKind = Literal["prior", "uniform"]


@dataclass
class ImageVariables:
    """Optimisation variables of one batched reconstruction (R restarts × N tiles)."""

    kind: ImageKind
    values: Tensor  # pixels: (R, N, 3, H, W); stain: (R, N, 2, H, W) pre-softplus concentrations
    stain: Tensor | None = None  # (R, 2, 3) stain vectors, stain kind only

    def tensors(self) -> list[Tensor]:
        return [self.values] if self.stain is None else [self.values, self.stain]

    def render(self) -> Tensor:
        """(R, N, 3, H, W) images in [0, 1]."""
        if self.kind == "pixels":
            return self.values
        concentration = F.softplus(self.values)
        stain = self.stain.abs()  # type: ignore[union-attr]
        optical_density = torch.einsum("rnkhw,rkc->rnchw", concentration, stain)
        return torch.exp(-optical_density)

    @torch.no_grad()
    def project(self) -> None:
        """Back into the feasible set: the pixel box, or unit-norm stain vectors."""
        if self.kind == "pixels":
            self.values.clamp_(0.0, 1.0)
        else:
            self.stain.div_(self.stain.norm(dim=-1, keepdim=True).clamp_min(1e-6))  # type: ignore[union-attr]


def init_images(
    kind: ImageKind,
    init: InitKind,
    shape: tuple[int, int, int, int],
    *,
    prior: Tensor | None,
    generator: torch.Generator,
    noise: float = 0.05,
) -> ImageVariables:
    """Starting point of ``shape = (R, N, H, W)`` tiles.

    Args:
        kind: ``pixels`` or ``stain``.
        init: ``prior`` (the public guess plus ``noise``) or ``uniform``.
        prior: The public guess, required for ``init="prior"``: a mean colour (3,), a mean
            tile (3, H, W), or one guess per tile (N, 3, H, W).
        generator: Source of the random start.
    """
    r, n, h, w = shape
    if init == "prior" and prior is None:
        raise ValueError("init='prior' needs the public mean tile")
    if kind == "pixels":
        if init == "uniform":
            values = torch.rand((r, n, 3, h, w), generator=generator)
        else:
            base = _as_tiles(prior, n, h, w)  # type: ignore[arg-type]
            values = (base + noise * torch.randn((r, n, 3, h, w), generator=generator)).clamp(0, 1)
        return ImageVariables("pixels", values.requires_grad_())
    basis = REFERENCE_HE.clone()
    if init == "uniform":
        concentration = torch.rand((r, n, 2, h, w), generator=generator)
    else:
        density = -torch.log(_as_tiles(prior, n, h, w).clamp_min(1e-3))  # type: ignore[arg-type]
        pixels = density.permute(1, 0, 2, 3).reshape(3, -1)  # (3, N*H*W)
        solution = torch.linalg.lstsq(basis.T, pixels).solution  # (2, N*H*W)
        start = solution.clamp_min(0.02).reshape(2, n, h, w).permute(1, 0, 2, 3)
        concentration = start * torch.exp(noise * 2 * torch.randn((r, n, 2, h, w), generator=generator))
    raw = torch.log(torch.expm1(concentration.clamp_min(1e-4))).contiguous()  # inverse softplus
    stain = basis.repeat(r, 1, 1)
    return ImageVariables("stain", raw.requires_grad_(), stain.requires_grad_())


def _as_tiles(prior: Tensor, n: int, h: int, w: int) -> Tensor:
    """A prior of shape (3,), (3, H, W) or (N, 3, H, W) as (N, 3, H, W)."""
    prior = prior.float()
    if prior.ndim == 1:
        prior = prior[:, None, None]
    return prior.expand(n, 3, h, w)


def mean_colours(prior: Tensor, n: int) -> Tensor:
    """Mean RGB of each tile's prior guess: (N, 3), from a prior of shape (3,), (3, H, W) or (N, 3, H, W)."""
    prior = prior.float()
    if prior.ndim == 1:
        return prior.expand(n, 3)
    if prior.ndim == 3:
        return prior.mean(dim=(1, 2)).expand(n, 3)
    return prior.mean(dim=(2, 3))
