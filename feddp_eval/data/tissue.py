"""The easy tissue model: lumen, nuclei with their exact mask, stroma and fibres, rendering.

Concentrations are drawn per pixel in stain units; :func:`render` composes them
into RGB with a stain (Beer-Lambert), an optical blur and sensor noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.random import Generator
from scipy import ndimage

from feddp_eval.data.shapes import draw_wobble, size_scale, smooth_noise, wobbly_distance
from feddp_eval.data.stain import StainProfile

FloatArray = np.ndarray

# Nucleus geometry in pixels at 64 px tiles (about 0.5 µm/px, 20x).
_SEMI_AXIS_RANGE = (2.4, 5.6)
_WOBBLE_MAX = (0.16, 0.1, 0.05)  # 2nd (bean), 3rd (triangular), 4th (square) harmonics
MAX_WOBBLE_TOTAL = 1.0 + sum(_WOBBLE_MAX)
# Nuclei foreground fraction per tile: Beta(a, b), clipped (mean about 0.18).
_FRACTION_BETA = (3.2, 11.0)
_FRACTION_RANGE = (0.05, 0.42)
_NUCLEUS_LOG_MEAN, _NUCLEUS_LOG_STD = 0.1, 0.5  # log hematoxylin concentration
_LUMEN_PROBABILITY = 0.35
# Sensor noise: i.i.d. Gaussian per pixel and channel, added last. Its PSNR against the noise-free
# rendering is about 34 dB, the ceiling of any reconstruction that does not rebuild the noise itself.
SENSOR_NOISE = 0.02
_OPTICAL_BLUR = (0.5, 1.2)  # sharpest and softest focus, in pixels


def draw_lumen(rng: Generator, shape: tuple[int, int, int]) -> FloatArray:
    """Soft lumen field in [0, 1] (1 = empty glass): zero to two wobbly blobs per tile."""
    n, size, _ = shape
    blobs = 2
    count = (rng.random(n) < _LUMEN_PROBABILITY) * rng.integers(1, blobs + 1, n)
    centre = rng.uniform(-0.1, 1.1, (n, blobs, 2)) * size
    axes = rng.uniform(0.07, 0.22, (n, blobs, 2)) * size
    angle = rng.uniform(0, np.pi, (n, blobs))
    wobble = draw_wobble(rng, (n, blobs), (0.2, 0.12, 0.06))
    tile = np.broadcast_to(np.arange(n)[:, None], (n, blobs))
    active = np.arange(blobs)[None, :] < count[:, None]  # only these are rendered
    yy, xx = np.mgrid[0:size, 0:size].reshape(2, 1, -1).astype(np.float32)
    centre = centre[active]
    distance = wobbly_distance(
        yy - centre[:, 0:1], xx - centre[:, 1:2], axes[active], angle[active], wobble[active]
    )  # (blobs in use, S*S)
    inside = np.zeros((n, size * size), dtype=np.float32)
    np.add.at(inside, tile[active], (distance < 1).astype(np.float32))
    inside = np.minimum(inside, 1.0).reshape(shape)
    return ndimage.gaussian_filter(inside, (0, 1.2, 1.2))


@dataclass(frozen=True)
class NucleusLayout:
    """How many nuclei a tile holds and how they gather; sizes at 64 px tiles.

    Attributes:
        fraction_beta: Beta(a, b) of the nuclei foreground fraction per tile.
        fraction_range: clip of that fraction.
        clustered: share of tiles whose nuclei gather around three centres.
        spread: range of the cluster spread, as a share of the tile side.
        semi_axis_range: long semi-axis range in pixels.
    """

    fraction_beta: tuple[float, float] = _FRACTION_BETA
    fraction_range: tuple[float, float] = _FRACTION_RANGE
    clustered: float = 0.5
    spread: tuple[float, float] = (0.15, 0.35)
    semi_axis_range: tuple[float, float] = _SEMI_AXIS_RANGE

    def window(self, tile_size: int) -> int:
        """Half side in pixels of a window that holds any nucleus of this layout."""
        return math.ceil(self.semi_axis_range[1] * size_scale(tile_size) * MAX_WOBBLE_TOTAL)


EASY_NUCLEI = NucleusLayout()


def nucleus_params(
    rng: Generator, shape: tuple[int, int, int], lumen: FloatArray, layout: NucleusLayout = EASY_NUCLEI
) -> dict[str, FloatArray]:
    """Centres, shapes and intensities of the nuclei of all tiles, one row per nucleus.

    ``tile`` says which tile each nucleus belongs to. Parameters are drawn for K
    slots per tile (K = the largest count) in one batch; only the slots below each
    tile's count whose centre is not in lumen are kept.
    """
    n, size, _ = shape
    scale = size_scale(size)
    low, high = layout.semi_axis_range
    mean_area = np.pi * (scale * (low + high) / 2) ** 2 * 0.78  # elongation shrinks the area
    fraction = np.clip(rng.beta(*layout.fraction_beta, n), *layout.fraction_range)
    counts = rng.poisson(-np.log1p(-fraction) * size * size / mean_area)  # Poisson coverage
    k = max(1, int(counts.max(initial=0)))
    # Some tiles cluster their nuclei around a few centres (glands, infiltrates).
    clustered = rng.random(n) < layout.clustered
    cluster_centres = rng.uniform(0, size, (n, 3, 2))
    spread = rng.uniform(*layout.spread, (n, 1, 1)) * size
    near = cluster_centres[np.arange(n)[:, None], rng.integers(0, 3, (n, k))]
    near = near + rng.normal(0, 1, (n, k, 2)) * spread
    centre = np.where(clustered[:, None, None], near, rng.uniform(-2, size + 2, (n, k, 2)))
    radius = rng.uniform(low, high, (n, k)) * scale
    params = {
        "tile": np.broadcast_to(np.arange(n)[:, None], (n, k)),
        "centre": centre,
        "axes": np.stack([radius, radius * rng.uniform(0.55, 1.0, (n, k))], -1),
        "angle": rng.uniform(0, np.pi, (n, k)),
        "wobble": draw_wobble(rng, (n, k), _WOBBLE_MAX),
        # Most nuclei dark, some pale (vesicular), a few very dark (hyperchromatic).
        # The floor keeps the palest nuclei visible above the haze, so the mask stays learnable.
        "intensity": np.maximum(np.exp(rng.normal(_NUCLEUS_LOG_MEAN, _NUCLEUS_LOG_STD, (n, k))), 0.45),
        "rim": rng.uniform(0.1, 0.6, (n, k)),
    }
    pixel = np.clip(np.round(centre).astype(int), 0, size - 1)
    in_lumen = lumen[params["tile"], pixel[..., 0], pixel[..., 1]] > 0.5
    active = (np.arange(k)[None, :] < counts[:, None]) & ~in_lumen
    return {name: value[active] for name, value in params.items()}


def stamp(shape: tuple[int, int, int], params: dict[str, FloatArray], *, half: int, add: bool) -> FloatArray:
    """Concentration of wobbly ellipses, one row of ``params`` each, on (N, S, S) tiles.

    Each shape is drawn in a (2 * half + 1)^2 window around its centre and
    scattered into the tiles, so the cost grows with the number of shapes, not
    with shapes times tile area. ``params`` holds ``tile``, ``centre``, ``axes``,
    ``angle``, ``wobble``, ``intensity`` and ``rim`` (the darker envelope over a
    paler interior). Overlaps keep the maximum, or add up when ``add`` (two
    nuclei stacked in the section's thickness absorb twice).
    """
    n, size, _ = shape
    offsets = np.arange(-half, half + 1)
    oy, ox = (a.ravel() for a in np.meshgrid(offsets, offsets, indexing="ij"))
    centre = params["centre"]  # (M, 2)
    base = np.round(centre).astype(int)
    py, px = base[:, 0:1] + oy, base[:, 1:2] + ox  # (M, P) pixel rows and columns
    distance = wobbly_distance(
        py - centre[:, 0:1],
        px - centre[:, 1:2],
        params["axes"],
        params["angle"],
        params["wobble"],
    )
    profile = 1.0 - params["rim"][:, None] * (1.0 - distance**3)
    value = params["intensity"][:, None] * profile
    keep = (distance < 1) & (py >= 0) & (py < size) & (px >= 0) & (px < size)
    tile = np.broadcast_to(params["tile"][:, None], keep.shape)
    flat = (tile[keep] * size + py[keep]) * size + px[keep]
    conc = np.zeros(n * size * size)
    (np.add if add else np.maximum).at(conc, flat, value[keep])
    return conc.reshape(shape)


def chromatin(rng: Generator, conc: FloatArray) -> tuple[FloatArray, np.ndarray]:
    """Granular chromatin over the nuclei concentration, and the exact mask (its support)."""
    mask = conc > 0
    grain = smooth_noise(rng, conc.shape, 0.7)
    return np.where(mask, conc * np.clip(1.0 + 0.25 * grain, 0.4, None), 0.0), mask


def draw_nuclei(
    rng: Generator, shape: tuple[int, int, int], lumen: FloatArray
) -> tuple[FloatArray, np.ndarray]:
    """Hematoxylin concentration of nuclei (before stain scale) and the exact mask."""
    params = nucleus_params(rng, shape, lumen)
    conc = stamp(shape, params, half=EASY_NUCLEI.window(shape[1]), add=False)
    return chromatin(rng, conc)


def _fibres(rng: Generator, shape: tuple[int, int, int]) -> FloatArray:
    """Wavy collagen streaks in [0, 1]: a warped sine grating, sharpened, in bundles."""
    n, size, _ = shape
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0, np.pi, (n, 1, 1))
    wavelength = rng.uniform(5.0, 10.0, (n, 1, 1))
    warp = smooth_noise(rng, shape, size / 8) * rng.uniform(1.0, 3.5, (n, 1, 1))
    jitter = smooth_noise(rng, shape, 1.5) * 0.6  # breaks the streaks into fibres
    phase = 2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / wavelength
    grating = 0.5 + 0.5 * np.sin(phase + warp + jitter)
    sharpness = rng.uniform(2, 6, (n, 1, 1))
    coverage = rng.uniform(-0.6, 0.6, (n, 1, 1))  # some tiles fibrous, some cellular
    bundles = np.clip(coverage + 0.7 * smooth_noise(rng, shape, size / 7), 0, 1)
    return grating**sharpness * bundles


def draw_stroma(
    rng: Generator, shape: tuple[int, int, int], lumen: FloatArray, mask: np.ndarray
) -> tuple[FloatArray, FloatArray]:
    """Hematoxylin haze and eosin of stroma, fibres and cytoplasm (before stain scales)."""
    n = shape[0]
    tissue = 1.0 - lumen
    fibres = _fibres(rng, shape)
    cytoplasm = ndimage.gaussian_filter(mask.astype(np.float64), (0, 2.5, 2.5))
    texture = 0.6 * smooth_noise(rng, shape, 1.5) + 0.8 * smooth_noise(rng, shape, 6.0)
    stroma = rng.uniform(0.2, 0.5, (n, 1, 1)) * np.clip(1 + 0.25 * texture, 0.2, None)
    eosin = stroma + rng.uniform(0.5, 1.2, (n, 1, 1)) * fibres + 0.4 * cytoplasm
    # Hematoxylin outside nuclei: a patchy haze (mucin, basophilic cytoplasm, debris)
    # and fibres that picked up some hematoxylin; these make one-channel thresholds fail.
    haze = rng.uniform(0.03, 0.22, (n, 1, 1)) * np.clip(1 + 0.8 * smooth_noise(rng, shape, 5.0), 0, None)
    hematoxylin = haze + rng.uniform(0.0, 0.15, (n, 1, 1)) * fibres
    return hematoxylin * tissue, np.clip(eosin, 0, None) * tissue


def render(
    rng: Generator,
    h_conc: FloatArray,
    e_conc: FloatArray,
    stain: StainProfile,
    sensor_noise: float = SENSOR_NOISE,
) -> FloatArray:
    """Beer-Lambert composition, optical blur and sensor noise of s.d. ``sensor_noise``; (N, 3, S, S)
    in [0, 1]. The noise is drawn whatever its size, so ``sensor_noise = 0`` renders the same tiles
    without it."""
    n = h_conc.shape[0]
    strength = rng.uniform(0.9, 1.1, (n, 2, 1, 1))  # per-tile section thickness
    h = np.asarray(stain.hematoxylin)[None, :, None, None]
    e = np.asarray(stain.eosin)[None, :, None, None]
    od = (
        stain.h_scale * strength[:, 0:1] * h_conc[:, None] * h
        + stain.e_scale * strength[:, 1:2] * e_conc[:, None] * e
        + stain.background
    )
    rgb = np.exp(-od.astype(np.float32))
    # Focus varies per tile: blend the sharpest and the softest blur.
    sharp, soft = (ndimage.gaussian_filter(rgb, (0, 0, s, s)) for s in _OPTICAL_BLUR)
    focus = rng.uniform(0, 1, (n, 1, 1, 1)).astype(np.float32)
    rgb = (1 - focus) * sharp + focus * soft
    rgb = rgb + rng.normal(0.0, sensor_noise, rgb.shape)
    return np.clip(rgb, 0.0, 1.0)
