"""Random fields and nucleus-like shapes: smooth noise and wobbly ellipses, batched over tiles."""

from __future__ import annotations

import math

import numpy as np
from numpy.random import Generator
from scipy import ndimage

FloatArray = np.ndarray


def smooth_noise(rng: Generator, shape: tuple[int, int, int], sigma: float) -> FloatArray:
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
        upsample = linear_upsampling(size, coarse, step)
        field = upsample @ field @ upsample.T
    field = field - field.mean(axis=(1, 2), keepdims=True)
    return field / np.maximum(field.std(axis=(1, 2), keepdims=True), 1e-6)


def linear_upsampling(size: int, coarse: int, step: int) -> FloatArray:
    """(size, coarse) matrix interpolating linearly between coarse points ``step`` apart."""
    position = np.arange(size) / step
    left = np.floor(position).astype(int)
    weight = (position - left).astype(np.float32)
    matrix = np.zeros((size, coarse), dtype=np.float32)
    matrix[np.arange(size), left] = 1 - weight
    matrix[np.arange(size), left + 1] += weight
    return matrix


def size_scale(tile_size: int) -> float:
    """Nuclei shrink gently on small tiles so a 16 px tile still holds a few."""
    return min(1.0, math.sqrt(tile_size / 64))


def wobbly_distance(
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


def draw_wobble(rng: Generator, shape: tuple[int, ...], maxima: tuple[float, float, float]) -> FloatArray:
    """Complex coefficients of the 2nd-4th boundary harmonics, ``|c_m| <= maxima[m]``."""
    amplitude = rng.uniform(0, 1, (*shape, 3)) * np.asarray(maxima)
    phase = rng.uniform(0, 2 * np.pi, (*shape, 3))
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)
