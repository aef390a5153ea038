"""Stains in optical-density space: the H&E vectors of a laboratory, and colour deconvolution.

Tissue absorbs light by Beer-Lambert: ``OD = c_H * h + c_E * e + background`` and
``RGB = exp(-OD)``, with ``h`` and ``e`` the hematoxylin and eosin stain vectors of
Ruifrok & Johnston (2001). Each site (institution) draws its own vectors and
intensities around that reference, the way real laboratories differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from feddp_eval.data.checks import check_at_least
from feddp_eval.errors import ConfigError, DataError

FloatArray = np.ndarray
Vector3 = tuple[float, float, float]


def _unit(vector: ArrayLike) -> Vector3:
    array = np.asarray(vector, dtype=np.float64)
    array = array / np.linalg.norm(array)
    return (float(array[0]), float(array[1]), float(array[2]))


@dataclass(frozen=True)
class StainProfile:
    """How one laboratory stains: stain OD vectors and intensities.

    Attributes:
        hematoxylin: unit OD vector of hematoxylin (R, G, B absorption).
        eosin: unit OD vector of eosin.
        h_scale: multiplier of hematoxylin concentration (staining time/strength).
        e_scale: multiplier of eosin concentration.
        background: grey OD added everywhere (glass, mounting medium, scanner).
    """

    hematoxylin: Vector3
    eosin: Vector3
    h_scale: float = 1.0
    e_scale: float = 1.0
    background: float = 0.04

    def __post_init__(self) -> None:
        for name in ("hematoxylin", "eosin"):
            vector = np.asarray(getattr(self, name), dtype=np.float64)
            if vector.shape != (3,) or not np.all(vector >= 0) or np.linalg.norm(vector) == 0:
                raise ConfigError(
                    f"`{name}` must be 3 non-negative numbers, not all zero, but got {getattr(self, name)!r}"
                )
            object.__setattr__(self, name, _unit(vector))
        for name in ("h_scale", "e_scale", "background"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"`{name}` must be >= 0, but got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form, for run manifests and ``Site.info``."""
        return {
            "hematoxylin": list(self.hematoxylin),
            "eosin": list(self.eosin),
            "h_scale": self.h_scale,
            "e_scale": self.e_scale,
            "background": self.background,
        }

    def basis(self) -> FloatArray:
        """(3, 3) rows hematoxylin, eosin, residual (their normalised cross product)."""
        h, e = np.asarray(self.hematoxylin), np.asarray(self.eosin)
        residual = np.cross(h, e)
        return np.stack([h, e, residual / np.linalg.norm(residual)])


REFERENCE_STAIN = StainProfile(
    hematoxylin=(0.650, 0.704, 0.286),
    eosin=(0.072, 0.990, 0.105),
    h_scale=1.0,
    e_scale=1.0,
    background=0.04,
)

_SITE_STAIN_TAG = 0x5741  # keeps stain draws apart from tile draws of the same seed


def site_stain(site_index: int, seed: int) -> StainProfile:
    """The stain of site ``site_index``, drawn around :data:`REFERENCE_STAIN`.

    Args:
        site_index: index of the site, >= 0.
        seed: experiment seed, >= 0.

    Returns:
        A profile whose vectors are the reference perturbed and renormalised and
        whose intensities are drawn per site; the same arguments give the same
        profile.
    """
    check_at_least("site_index", site_index, 0)
    check_at_least("seed", seed, 0)
    rng = np.random.default_rng(np.random.SeedSequence([seed, site_index, _SITE_STAIN_TAG]))
    reference = REFERENCE_STAIN
    hematoxylin = np.asarray(reference.hematoxylin) + rng.normal(0.0, 0.12, 3)
    eosin = np.asarray(reference.eosin) + rng.normal(0.0, 0.12, 3)
    return StainProfile(
        hematoxylin=_unit(np.clip(hematoxylin, 0.02, None)),
        eosin=_unit(np.clip(eosin, 0.02, None)),
        h_scale=float(rng.uniform(0.7, 1.35)),
        e_scale=float(rng.uniform(0.6, 1.4)),
        background=float(rng.uniform(0.01, 0.07)),
    )


def hematoxylin_channel(images: Tensor, stain: StainProfile = REFERENCE_STAIN) -> Tensor:
    """Hematoxylin concentration by colour deconvolution (Ruifrok & Johnston).

    Args:
        images: (N, 3, H, W) RGB in [0, 1].
        stain: the stain basis to unmix with (hematoxylin, eosin, their cross product).

    Returns:
        (N, 1, H, W) hematoxylin concentration, in OD units along the stain vector.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise DataError(
            f"`images` must be (N, 3, H, W) RGB, but got shape {tuple(images.shape)}; "
            "stack tiles with a channel axis of 3"
        )
    od = -torch.log(images.clamp(min=1e-6))
    inverse = torch.as_tensor(np.linalg.inv(stain.basis()), dtype=od.dtype, device=od.device)
    # OD = conc @ basis, per pixel, so conc = OD @ basis^-1; only column 0 is needed.
    return torch.einsum("nchw,c->nhw", od, inverse[:, 0]).unsqueeze(1)
