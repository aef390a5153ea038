"""Synthetic H&E tiles with exact nuclei masks, one stain per site.

Tiles are composed in optical-density (OD) space, the way stained tissue
absorbs light (Beer-Lambert): ``OD = c_H * h + c_E * e + background`` and
``RGB = exp(-OD)``, with ``h`` and ``e`` the hematoxylin and eosin stain
vectors of Ruifrok & Johnston (2001). Hematoxylin marks nuclei (purple-blue),
eosin marks stroma and cytoplasm (pink), lumen is empty glass (white).

Each site (institution) draws its own stain vectors and intensities, so sites
differ in hue and strength the way real laboratories do, while the nuclei
mask stays the exact ground truth: it is the support of the drawn nuclei.
Everything is deterministic in the seed and vectorised over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.random import Generator
from numpy.typing import ArrayLike
from scipy import ndimage
from torch import Tensor

from feddp_eval.data.types import Site, TileSet
from feddp_eval.errors import ConfigError, DataError

FloatArray = np.ndarray
Vector3 = tuple[float, float, float]

# Nucleus geometry in pixels at 64 px tiles (about 0.5 µm/px, 20x).
_SEMI_AXIS_RANGE = (2.4, 5.6)
_WOBBLE_MAX = (0.16, 0.1, 0.05)  # 2nd (bean), 3rd (triangular), 4th (square) harmonics
_MAX_WOBBLE_TOTAL = 1.0 + sum(_WOBBLE_MAX)
# Nuclei foreground fraction per tile: Beta(a, b), clipped (mean about 0.18).
_FRACTION_BETA = (3.2, 11.0)
_FRACTION_RANGE = (0.05, 0.42)
_NUCLEUS_LOG_MEAN, _NUCLEUS_LOG_STD = 0.1, 0.5  # log hematoxylin concentration
_LUMEN_PROBABILITY = 0.35
_RGB_NOISE = 0.02
_OPTICAL_BLUR = (0.5, 1.2)  # sharpest and softest focus, in pixels


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
    _check_at_least("site_index", site_index, 0)
    _check_at_least("seed", seed, 0)
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


def synthesize_tiles(
    n: int, *, stain: StainProfile = REFERENCE_STAIN, tile_size: int = 64, seed: int = 0
) -> TileSet:
    """Draw ``n`` synthetic H&E tiles and their exact nuclei masks.

    Args:
        n: number of tiles, >= 0.
        stain: stain vectors and intensities of the site.
        tile_size: side of the square tiles in pixels, >= 8.
        seed: seed of ``numpy.random.default_rng``; equal seeds give equal tiles.

    Returns:
        Images (n, 3, S, S) float32 in [0, 1] and masks (n, 1, S, S) float32 in {0, 1}.
    """
    _check_at_least("n", n, 0)
    _check_at_least("tile_size", tile_size, 8)
    _check_at_least("seed", seed, 0)
    rng = np.random.default_rng(seed)
    shape = (n, tile_size, tile_size)
    lumen = _lumen(rng, shape)
    nucleus_conc, mask = _nuclei(rng, shape, lumen)
    h_conc, e_conc = _tissue(rng, shape, lumen, mask)
    h_conc = h_conc + nucleus_conc
    images = _render(rng, h_conc, e_conc, stain)
    return TileSet(
        images=torch.from_numpy(images.astype(np.float32)),
        masks=torch.from_numpy(mask[:, None].astype(np.float32)),
    )


def synthetic_sites(
    n_sites: int,
    train_tiles: int | Sequence[int],
    test_tiles: int,
    *,
    tile_size: int = 64,
    seed: int = 0,
) -> list[Site]:
    """Sites ``site-0``, ``site-1``, ... each with its own stain and tiles.

    Args:
        n_sites: number of sites, >= 1.
        train_tiles: training tiles per site: one count for all, or one per site.
        test_tiles: held-out tiles per site.
        tile_size: side of the square tiles in pixels, >= 8.
        seed: experiment seed; stains and tiles of every site and split derive from it.

    Returns:
        One :class:`Site` per index, whose ``info`` records the source, stain and seed.
    """
    _check_at_least("n_sites", n_sites, 1)
    train_counts = _per_site_counts(train_tiles, n_sites)
    _check_at_least("test_tiles", test_tiles, 0)
    sites = []
    for index in range(n_sites):
        stain = site_stain(index, seed)
        train_seed, test_seed = (_split_seed(seed, index, split) for split in (0, 1))
        sites.append(
            Site(
                name=f"site-{index}",
                train=synthesize_tiles(
                    train_counts[index], stain=stain, tile_size=tile_size, seed=train_seed
                ),
                test=synthesize_tiles(test_tiles, stain=stain, tile_size=tile_size, seed=test_seed),
                info={"source": "synthetic", "stain": stain.to_dict(), "seed": seed},
            )
        )
    return sites


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


def save_tile_grid(tiles: TileSet, path: str | Path, *, columns: int = 8, scale: int = 1) -> None:
    """Write a PNG where each tile stands beside its mask overlay, for a person to look at.

    The image is ``columns * (2 * S * scale + 2) + 2`` pixels wide and
    ``rows * (S * scale + 2) + 2`` high, with ``rows = ceil(len(tiles) / columns)``
    and a 2 px white gutter. Masked pixels are tinted green in the overlay.

    Args:
        tiles: the tiles to draw, at least one.
        path: where to write the PNG; parent folders must exist.
        columns: tile pairs per row, >= 1.
        scale: integer nearest-neighbour magnification, >= 1.
    """
    from PIL import Image  # torchvision's dependency; only needed here

    _check_at_least("columns", columns, 1)
    _check_at_least("scale", scale, 1)
    if len(tiles) == 0:
        raise DataError("`tiles` is empty; pass at least one tile to draw a grid")
    images = tiles.images.detach().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()
    masks = tiles.masks.detach().cpu()[:, 0].numpy() > 0.5
    overlay = images.copy()
    overlay[masks] = 0.45 * overlay[masks] + 0.55 * np.array([0.1, 0.9, 0.2])
    pairs = np.concatenate([images, overlay], axis=2)  # (N, S, 2S, 3)
    pairs = pairs.repeat(scale, axis=1).repeat(scale, axis=2)
    Image.fromarray(_grid(pairs, columns)).save(Path(path), format="PNG")


def _grid(cells: FloatArray, columns: int, gutter: int = 2) -> np.ndarray:
    count, height, width, _ = cells.shape
    rows = math.ceil(count / columns)
    canvas = np.ones((rows * (height + gutter) + gutter, columns * (width + gutter) + gutter, 3))
    for index in range(count):
        top = gutter + (index // columns) * (height + gutter)
        left = gutter + (index % columns) * (width + gutter)
        canvas[top : top + height, left : left + width] = cells[index]
    return (canvas * 255).round().astype(np.uint8)


def _check_at_least(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"`{name}` must be an integer >= {minimum}, but got {value!r}")


def _per_site_counts(train_tiles: int | Sequence[int], n_sites: int) -> list[int]:
    if isinstance(train_tiles, (int, np.integer)):
        counts = [train_tiles] * n_sites
    else:
        counts = list(train_tiles)
        if len(counts) != n_sites:
            raise ConfigError(
                f"`train_tiles` must hold one count per site ({n_sites}), but got "
                f"{len(counts)} counts {counts!r}; pass {n_sites} counts or a single integer"
            )
    for count in counts:
        _check_at_least("train_tiles", count, 0)
    return [int(count) for count in counts]


def _split_seed(seed: int, site_index: int, split: int) -> int:
    """A tile seed for (site, split): SeedSequence children never collide in practice."""
    sequence = np.random.SeedSequence(seed, spawn_key=(site_index, split))
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def _smooth_noise(rng: Generator, shape: tuple[int, int, int], sigma: float) -> FloatArray:
    """Gaussian-blurred white noise with unit standard deviation per tile (float32).

    Wide blurs are made on a coarser grid and upsampled linearly (two small matrix
    products), which looks the same and costs a fraction of a wide kernel.
    """
    n, size, _ = shape
    step = max(1, int(sigma // 2))
    coarse = size if step == 1 else (size - 1) // step + 2
    white = rng.standard_normal((n, coarse, coarse), dtype=np.float32)
    field = ndimage.gaussian_filter(white, (0, sigma / step, sigma / step), mode="wrap")
    if step > 1:
        upsample = _linear_upsampling(size, coarse, step)
        field = upsample @ field @ upsample.T
    field = field - field.mean(axis=(1, 2), keepdims=True)
    return field / np.maximum(field.std(axis=(1, 2), keepdims=True), 1e-6)


def _linear_upsampling(size: int, coarse: int, step: int) -> FloatArray:
    """(size, coarse) matrix interpolating linearly between coarse points ``step`` apart."""
    position = np.arange(size) / step
    left = np.floor(position).astype(int)
    weight = (position - left).astype(np.float32)
    matrix = np.zeros((size, coarse), dtype=np.float32)
    matrix[np.arange(size), left] = 1 - weight
    matrix[np.arange(size), left + 1] += weight
    return matrix


def _size_scale(tile_size: int) -> float:
    """Nuclei shrink gently on small tiles so a 16 px tile still holds a few."""
    return min(1.0, math.sqrt(tile_size / 64))


def _wobbly_distance(
    du: FloatArray, dv: FloatArray, axes: FloatArray, angle: FloatArray, wobble: FloatArray
) -> FloatArray:
    """Normalised distance to the centre of rotated, wobbly ellipses; < 1 is inside.

    ``du, dv``: offsets from the centre (..., P); ``axes``: (..., 2) semi-axes;
    ``angle``: (...,) rotation; ``wobble``: (..., 3) complex amplitude-and-phase of
    the 2nd-4th boundary harmonics. The boundary radius is
    ``1 + sum_m Re(wobble_m * exp(i m theta))``, evaluated with powers of the unit
    direction ``z = exp(i theta)`` instead of trigonometric calls, for speed.
    """
    du, dv = du.astype(np.float32), dv.astype(np.float32)
    cos = np.cos(angle).astype(np.float32)[..., None]
    sin = np.sin(angle).astype(np.float32)[..., None]
    axes = axes.astype(np.float32)
    u = (cos * du + sin * dv) / axes[..., 0:1]
    v = (-sin * du + cos * dv) / axes[..., 1:2]
    rho = np.sqrt(u * u + v * v)
    z = (u + np.complex64(1j) * v) / np.maximum(rho, np.float32(1e-6))
    z2 = z * z
    harmonics = wobble[..., 0:1] * z2 + wobble[..., 1:2] * (z2 * z)
    harmonics = harmonics + wobble[..., 2:3] * (z2 * z2)
    return rho / (1.0 + harmonics.real)


def _wobble(rng: Generator, shape: tuple[int, ...], maxima: tuple[float, float, float]) -> FloatArray:
    """Complex coefficients of the 2nd-4th boundary harmonics, ``|c_m| <= maxima[m]``."""
    amplitude = rng.uniform(0, 1, (*shape, 3)) * np.asarray(maxima)
    phase = rng.uniform(0, 2 * np.pi, (*shape, 3))
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)


def _lumen(rng: Generator, shape: tuple[int, int, int]) -> FloatArray:
    """Soft lumen field in [0, 1] (1 = empty glass): zero to two wobbly blobs per tile."""
    n, size, _ = shape
    blobs = 2
    count = (rng.random(n) < _LUMEN_PROBABILITY) * rng.integers(1, blobs + 1, n)
    centre = rng.uniform(-0.1, 1.1, (n, blobs, 2)) * size
    axes = rng.uniform(0.07, 0.22, (n, blobs, 2)) * size
    angle = rng.uniform(0, np.pi, (n, blobs))
    wobble = _wobble(rng, (n, blobs), (0.2, 0.12, 0.06))
    tile = np.broadcast_to(np.arange(n)[:, None], (n, blobs))
    active = np.arange(blobs)[None, :] < count[:, None]  # only these are rendered
    yy, xx = np.mgrid[0:size, 0:size].reshape(2, 1, -1).astype(np.float32)
    centre = centre[active]
    distance = _wobbly_distance(
        yy - centre[:, 0:1], xx - centre[:, 1:2], axes[active], angle[active], wobble[active]
    )  # (blobs in use, S*S)
    inside = np.zeros((n, size * size), dtype=np.float32)
    np.add.at(inside, tile[active], (distance < 1).astype(np.float32))
    inside = np.minimum(inside, 1.0).reshape(shape)
    return ndimage.gaussian_filter(inside, (0, 1.2, 1.2))


def _nucleus_params(rng: Generator, shape: tuple[int, int, int], lumen: FloatArray) -> dict[str, FloatArray]:
    """Centres, shapes and intensities of the nuclei of all tiles, one row per nucleus.

    ``tile`` says which tile each nucleus belongs to. Parameters are drawn for K
    slots per tile (K = the largest count) in one batch; only the slots below each
    tile's count whose centre is not in lumen are kept.
    """
    n, size, _ = shape
    scale = _size_scale(size)
    low, high = _SEMI_AXIS_RANGE
    mean_area = np.pi * (scale * (low + high) / 2) ** 2 * 0.78  # elongation shrinks the area
    fraction = np.clip(rng.beta(*_FRACTION_BETA, n), *_FRACTION_RANGE)
    counts = rng.poisson(-np.log1p(-fraction) * size * size / mean_area)  # Poisson coverage
    k = max(1, int(counts.max(initial=0)))
    # Half of the tiles cluster their nuclei around a few centres (glands, infiltrates).
    clustered = rng.random(n) < 0.5
    cluster_centres = rng.uniform(0, size, (n, 3, 2))
    spread = rng.uniform(0.15, 0.35, (n, 1, 1)) * size
    near = cluster_centres[np.arange(n)[:, None], rng.integers(0, 3, (n, k))]
    near = near + rng.normal(0, 1, (n, k, 2)) * spread
    centre = np.where(clustered[:, None, None], near, rng.uniform(-2, size + 2, (n, k, 2)))
    radius = rng.uniform(low, high, (n, k)) * scale
    params = {
        "tile": np.broadcast_to(np.arange(n)[:, None], (n, k)),
        "centre": centre,
        "axes": np.stack([radius, radius * rng.uniform(0.55, 1.0, (n, k))], -1),
        "angle": rng.uniform(0, np.pi, (n, k)),
        "wobble": _wobble(rng, (n, k), _WOBBLE_MAX),
        # Most nuclei dark, some pale (vesicular), a few very dark (hyperchromatic).
        # The floor keeps the palest nuclei visible above the haze, so the mask stays learnable.
        "intensity": np.maximum(np.exp(rng.normal(_NUCLEUS_LOG_MEAN, _NUCLEUS_LOG_STD, (n, k))), 0.45),
        "rim": rng.uniform(0.1, 0.6, (n, k)),
    }
    pixel = np.clip(np.round(centre).astype(int), 0, size - 1)
    in_lumen = lumen[params["tile"], pixel[..., 0], pixel[..., 1]] > 0.5
    active = (np.arange(k)[None, :] < counts[:, None]) & ~in_lumen
    return {name: value[active] for name, value in params.items()}


def _nuclei(rng: Generator, shape: tuple[int, int, int], lumen: FloatArray) -> tuple[FloatArray, np.ndarray]:
    """Hematoxylin concentration of nuclei (before stain scale) and the exact mask.

    Each nucleus is drawn in a small window around its centre and scattered into
    the tiles with a maximum, so the cost grows with the number of nuclei, not
    with nuclei times tile area.
    """
    n, size, _ = shape
    params = _nucleus_params(rng, shape, lumen)
    half = math.ceil(_SEMI_AXIS_RANGE[1] * _size_scale(size) * _MAX_WOBBLE_TOTAL)
    offsets = np.arange(-half, half + 1)
    oy, ox = (a.ravel() for a in np.meshgrid(offsets, offsets, indexing="ij"))
    centre = params["centre"]  # (M, 2)
    base = np.round(centre).astype(int)
    py, px = base[:, 0:1] + oy, base[:, 1:2] + ox  # (M, P) pixel rows and columns
    distance = _wobbly_distance(
        py - centre[:, 0:1],
        px - centre[:, 1:2],
        params["axes"],
        params["angle"],
        params["wobble"],
    )
    # A darker rim (chromatin against the envelope) over a paler interior.
    profile = 1.0 - params["rim"][:, None] * (1.0 - distance**3)
    value = params["intensity"][:, None] * profile
    keep = (distance < 1) & (py >= 0) & (py < size) & (px >= 0) & (px < size)
    tile = np.broadcast_to(params["tile"][:, None], keep.shape)
    flat = (tile[keep] * size + py[keep]) * size + px[keep]
    conc = np.zeros(n * size * size)
    np.maximum.at(conc, flat, value[keep])
    conc = conc.reshape(shape)
    mask = conc > 0
    grain = _smooth_noise(rng, shape, 0.7)  # granular chromatin
    conc = np.where(mask, conc * np.clip(1.0 + 0.25 * grain, 0.4, None), 0.0)
    return conc, mask


def _fibres(rng: Generator, shape: tuple[int, int, int]) -> FloatArray:
    """Wavy collagen streaks in [0, 1]: a warped sine grating, sharpened, in bundles."""
    n, size, _ = shape
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(0, np.pi, (n, 1, 1))
    wavelength = rng.uniform(5.0, 10.0, (n, 1, 1))
    warp = _smooth_noise(rng, shape, size / 8) * rng.uniform(1.0, 3.5, (n, 1, 1))
    jitter = _smooth_noise(rng, shape, 1.5) * 0.6  # breaks the streaks into fibres
    phase = 2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / wavelength
    grating = 0.5 + 0.5 * np.sin(phase + warp + jitter)
    sharpness = rng.uniform(2, 6, (n, 1, 1))
    coverage = rng.uniform(-0.6, 0.6, (n, 1, 1))  # some tiles fibrous, some cellular
    bundles = np.clip(coverage + 0.7 * _smooth_noise(rng, shape, size / 7), 0, 1)
    return grating**sharpness * bundles


def _tissue(
    rng: Generator, shape: tuple[int, int, int], lumen: FloatArray, mask: np.ndarray
) -> tuple[FloatArray, FloatArray]:
    """Hematoxylin haze and eosin of stroma, fibres and cytoplasm (before stain scales)."""
    n = shape[0]
    tissue = 1.0 - lumen
    fibres = _fibres(rng, shape)
    cytoplasm = ndimage.gaussian_filter(mask.astype(np.float64), (0, 2.5, 2.5))
    texture = 0.6 * _smooth_noise(rng, shape, 1.5) + 0.8 * _smooth_noise(rng, shape, 6.0)
    stroma = rng.uniform(0.2, 0.5, (n, 1, 1)) * np.clip(1 + 0.25 * texture, 0.2, None)
    eosin = stroma + rng.uniform(0.5, 1.2, (n, 1, 1)) * fibres + 0.4 * cytoplasm
    # Hematoxylin outside nuclei: a patchy haze (mucin, basophilic cytoplasm, debris)
    # and fibres that picked up some hematoxylin; these make one-channel thresholds fail.
    haze = rng.uniform(0.03, 0.22, (n, 1, 1)) * np.clip(1 + 0.8 * _smooth_noise(rng, shape, 5.0), 0, None)
    hematoxylin = haze + rng.uniform(0.0, 0.15, (n, 1, 1)) * fibres
    return hematoxylin * tissue, np.clip(eosin, 0, None) * tissue


def _render(rng: Generator, h_conc: FloatArray, e_conc: FloatArray, stain: StainProfile) -> FloatArray:
    """Beer-Lambert composition, optical blur and sensor noise; (N, 3, S, S) in [0, 1]."""
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
    rgb = rgb + rng.normal(0.0, _RGB_NOISE, rgb.shape)
    return np.clip(rgb, 0.0, 1.0)
