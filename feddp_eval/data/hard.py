"""The hard tissue model (``difficulty = "hard"``): what defeats a hematoxylin threshold.

On top of the easy model it draws

- crowded nuclei in tight clusters that touch and overlap (overlaps add up and
  look darker, as two nuclei stacked in the section's thickness do);
- pale (vesicular) nuclei, a dark envelope around an interior barely darker than
  the haze, and hyperchromatic ones, large and very dark;
- nuclei that displace the eosin-stained stroma, so a pale nucleus is a hole;
- hematoxylin-dark look-alikes that are not nuclei (mask 0): karyorrhectic
  debris (clusters of tiny fragments), basophilic mucin (large soft blobs) and
  brown-black pigment (another colour that unmixes mostly into hematoxylin);
- out-of-focus regions (a blur that varies across the tile);
- stain variation within a site: every tile jitters the site's stain vectors and
  intensities, and the section's thickness varies across the tile.

The mask stays the exact support of the drawn nuclei. The easy model is
untouched: hard tiles take their own path from the tile seed's generator and
reuse the easy model's building blocks (lumen, nucleus stamping, stroma).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.random import Generator
from scipy import ndimage

from feddp_eval.data.shapes import draw_wobble, size_scale, smooth_noise
from feddp_eval.data.stain import StainProfile
from feddp_eval.data.tissue import (
    SENSOR_NOISE,
    NucleusLayout,
    chromatin,
    draw_lumen,
    draw_stroma,
    nucleus_params,
    stamp,
)

FloatArray = np.ndarray
Shape = tuple[int, int, int]

HARD_NUCLEI = NucleusLayout(
    fraction_beta=(4.0, 10.0), fraction_range=(0.08, 0.5), clustered=0.8, spread=(0.07, 0.2)
)
_PALE_SHARE, _HYPER_SHARE = 0.25, 0.15
_HYPER_GROWTH = 1.25  # hyperchromatic nuclei are larger
# OD direction (unit) of brown-black pigment (anthracosis, formalin pigment): not hematoxylin's
# hue, yet the standard H&E deconvolution puts most of it into the hematoxylin channel.
PIGMENT = tuple(np.asarray((0.60, 0.62, 0.50)) / np.linalg.norm((0.60, 0.62, 0.50)))
_STAIN_JITTER = 0.05  # per-tile s.d. of each stain vector component, before renormalising
_FOCUS_BLUR = (0.5, 2.2)  # in-focus and out-of-focus blur, in pixels


@dataclass(frozen=True)
class HardTissue:
    """The layers of hard tiles before rendering, each (N, S, S) in stain units.

    Attributes:
        nuclei: hematoxylin of the nuclei; ``mask`` is exactly its support.
        mask: the ground truth, bool.
        lookalikes: hematoxylin that is not nuclei: debris and mucin (mask 0).
        hematoxylin: all hematoxylin: haze and fibres, nuclei, look-alikes.
        eosin: eosin of stroma, fibres and cytoplasm, displaced by the nuclei.
        pigment: OD of brown-black pigment along :data:`PIGMENT` (mask 0).
    """

    nuclei: FloatArray
    mask: np.ndarray
    lookalikes: FloatArray
    hematoxylin: FloatArray
    eosin: FloatArray
    pigment: FloatArray


def synthesize_hard(
    rng: Generator, shape: Shape, stain: StainProfile, sensor_noise: float = SENSOR_NOISE
) -> tuple[FloatArray, np.ndarray]:
    """Hard tiles and their exact masks.

    Args:
        rng: the tile seed's generator.
        shape: (N, S, S) tiles.
        stain: the site's stain, jittered per tile.
        sensor_noise: s.d. of the per-pixel sensor noise (drawn whatever its size).

    Returns:
        Images (N, 3, S, S) in [0, 1] and masks (N, S, S) bool.
    """
    tissue = draw_hard_tissue(rng, shape)
    return render_hard(rng, tissue, stain, sensor_noise), tissue.mask


def draw_hard_tissue(rng: Generator, shape: Shape) -> HardTissue:
    """Nuclei, look-alikes, stroma and pigment of hard tiles (see the module docstring)."""
    lumen = draw_lumen(rng, shape)
    params = nucleus_params(rng, shape, lumen, HARD_NUCLEI)
    _vary_nuclei(rng, params)
    half = math.ceil(HARD_NUCLEI.window(shape[1]) * _HYPER_GROWTH) + 1  # + 1: centres are rounded
    nuclei, mask = chromatin(rng, stamp(shape, params, half=half, add=True))
    haze, eosin = draw_stroma(rng, shape, lumen, mask)
    tissue = 1.0 - lumen
    lookalikes = (_debris(rng, shape) + _mucin(rng, shape)) * tissue
    return HardTissue(
        nuclei=nuclei,
        mask=mask,
        lookalikes=lookalikes,
        hematoxylin=haze + nuclei + lookalikes,
        eosin=eosin * (1.0 - 0.7 * mask),  # a nucleus displaces the stroma: a pale one is a hole
        pigment=_pigment(rng, shape) * tissue,
    )


def _vary_nuclei(rng: Generator, params: dict[str, FloatArray]) -> None:
    """Make some nuclei pale (vesicular) and some hyperchromatic, in place."""
    kind = rng.random(len(params["intensity"]))
    pale, hyper = kind < _PALE_SHARE, kind > 1.0 - _HYPER_SHARE
    params["intensity"] = np.where(pale, rng.uniform(0.2, 0.4, kind.shape), params["intensity"])
    params["rim"] = np.where(pale, rng.uniform(0.55, 0.8, kind.shape), params["rim"])
    params["intensity"] = np.where(
        hyper, params["intensity"] * rng.uniform(1.6, 2.4, kind.shape), params["intensity"]
    )
    params["rim"] = np.where(hyper, rng.uniform(0.0, 0.15, kind.shape), params["rim"])
    params["axes"] = params["axes"] * np.where(hyper, _HYPER_GROWTH, 1.0)[:, None]


_BLOB_WOBBLE = (1.0, 0.7, 0.5)  # harmonic amplitudes of look-alike outlines, times their `wobble`


def _window(largest_radius: float, wobble: float) -> int:
    """Half side of a stamping window that holds a blob of this radius and wobble, whatever its centre."""
    return math.ceil(largest_radius * (1 + wobble * sum(_BLOB_WOBBLE))) + 1


def _blobs(
    rng: Generator, shape: Shape, count: np.ndarray, centre: FloatArray, radius: FloatArray, wobble: float
) -> dict[str, FloatArray]:
    """Stamp parameters of flat blobs: ``count`` (N,) per tile, ``centre`` (N, K, 2), ``radius`` (N, K)."""
    n, k = radius.shape
    active = np.arange(k)[None, :] < count[:, None]
    params = {
        "tile": np.broadcast_to(np.arange(n)[:, None], (n, k)),
        "centre": centre,
        "axes": np.stack([radius, radius * rng.uniform(0.5, 1.0, (n, k))], -1),
        "angle": rng.uniform(0, np.pi, (n, k)),
        "wobble": draw_wobble(
            rng, (n, k), (wobble * _BLOB_WOBBLE[0], wobble * _BLOB_WOBBLE[1], wobble * _BLOB_WOBBLE[2])
        ),
        "intensity": np.ones((n, k)),
        "rim": np.zeros((n, k)),
    }
    return {name: value[active] for name, value in params.items()}


def _debris(rng: Generator, shape: Shape) -> FloatArray:
    """Karyorrhectic debris: in some tiles, a cluster or two of tiny dark fragments."""
    n, size, _ = shape
    k = 24
    clusters = rng.uniform(0, size, (n, 2, 2))
    which = rng.integers(0, 2, (n, k))
    centre = clusters[np.arange(n)[:, None], which] + rng.normal(0, 1, (n, k, 2)) * rng.uniform(
        2, 7, (n, 1, 1)
    )
    largest = 1.5 * size_scale(size)
    radius = rng.uniform(0.4, 1.0, (n, k)) * largest
    count = (rng.random(n) < 0.45) * rng.integers(6, k + 1, n)
    params = _blobs(rng, shape, count, centre, radius, 0.3)
    params["intensity"] = rng.uniform(0.8, 2.0, len(params["rim"]))
    return stamp(shape, params, half=_window(largest, 0.3), add=False)


def _mucin(rng: Generator, shape: Shape) -> FloatArray:
    """Basophilic mucin: in some tiles, one or two large soft hematoxylin-dark blobs."""
    n, size, _ = shape
    count = (rng.random(n) < 0.4) * rng.integers(1, 3, n)
    centre = rng.uniform(0, size, (n, 2, 2))
    largest = 0.22 * size
    radius = rng.uniform(0.1 / 0.22, 1.0, (n, 2)) * largest
    params = _blobs(rng, shape, count, centre, radius, 0.2)
    field = stamp(shape, params, half=_window(largest, 0.2), add=False)
    strength = rng.uniform(0.35, 0.9, (n, 1, 1)) * np.clip(1 + 0.3 * smooth_noise(rng, shape, 2.0), 0.3, None)
    return ndimage.gaussian_filter(field, (0, 1.5, 1.5)) * strength


def _pigment(rng: Generator, shape: Shape) -> FloatArray:
    """Brown-black pigment: in some tiles, clumps of granules (OD along :data:`PIGMENT`)."""
    n, size, _ = shape
    k = 10
    count = (rng.random(n) < 0.3) * rng.integers(2, k + 1, n)
    clumps = rng.uniform(0, size, (n, 1, 2))
    centre = clumps + rng.normal(0, 1, (n, k, 2)) * rng.uniform(2, 8, (n, 1, 1))
    largest = 3.5 * size_scale(size)
    radius = rng.uniform(1.0 / 3.5, 1.0, (n, k)) * largest
    params = _blobs(rng, shape, count, centre, radius, 0.3)
    params["intensity"] = rng.uniform(0.6, 1.6, len(params["rim"]))
    field = stamp(shape, params, half=_window(largest, 0.3), add=False)
    return ndimage.gaussian_filter(field, (0, 0.5, 0.5))


def _tile_stains(rng: Generator, n: int, stain: StainProfile) -> tuple[FloatArray, FloatArray]:
    """Per-tile (N, 3) unit hematoxylin and eosin vectors, jittered around the site's."""
    vectors = []
    for reference in (stain.hematoxylin, stain.eosin):
        jittered = np.clip(np.asarray(reference) + rng.normal(0, _STAIN_JITTER, (n, 3)), 0.02, None)
        vectors.append(jittered / np.linalg.norm(jittered, axis=1, keepdims=True))
    return vectors[0], vectors[1]


def render_hard(
    rng: Generator, tissue: HardTissue, stain: StainProfile, sensor_noise: float = SENSOR_NOISE
) -> FloatArray:
    """Beer-Lambert with per-tile stains and uneven thickness, a varying focus, sensor noise.

    Returns:
        (N, 3, S, S) RGB in [0, 1].
    """
    n, size, _ = tissue.mask.shape
    h, e = (v[:, :, None, None] for v in _tile_stains(rng, n, stain))
    scales = (
        rng.uniform(0.75, 1.3, (n, 2, 1, 1)) * np.array([stain.h_scale, stain.e_scale])[None, :, None, None]
    )
    thickness = np.clip(1.0 + 0.15 * smooth_noise(rng, (n, size, size), size / 4), 0.5, None)[:, None]
    background = stain.background + rng.uniform(-0.01, 0.03, (n, 1, 1, 1))
    od = (
        scales[:, 0:1] * thickness * tissue.hematoxylin[:, None] * h
        + scales[:, 1:2] * thickness * tissue.eosin[:, None] * e
        + tissue.pigment[:, None] * np.asarray(PIGMENT)[None, :, None, None]
        + np.maximum(background, 0.0)
    )
    rgb = np.exp(-od.astype(np.float32))
    sharp, soft = (ndimage.gaussian_filter(rgb, (0, 0, s, s)) for s in _FOCUS_BLUR)
    # Out of focus where a smooth field is high; some tiles are sharp throughout.
    offset = rng.uniform(-2.0, 0.5, (n, 1, 1))
    focus = np.clip(0.5 + offset + 1.2 * smooth_noise(rng, (n, size, size), size / 5), 0, 1)
    focus = focus[:, None].astype(np.float32)
    rgb = (1 - focus) * sharp + focus * soft
    rgb = rgb + rng.normal(0.0, sensor_noise, rgb.shape)
    return np.clip(rgb, 0.0, 1.0)
