"""Reference rows that need no training: hematoxylin-Otsu, a pathologist's simplest tool.

Colour deconvolution with the *standard* H&E matrix (Ruifrok & Johnston 2001,
:data:`~feddp_eval.data.stain.REFERENCE_STAIN`, the matrix of ImageJ's "Colour
Deconvolution: H&E" and of scikit-image's ``rgb2hed``) gives a hematoxylin
concentration per pixel; Otsu's threshold, chosen per tile, splits it into
nuclei (above) and the rest. The standard matrix, not the site's own stain:
a laboratory does not know its stain vectors, and the site's vectors would be
an oracle no pathologist has. Pass ``stain=`` to measure that oracle anyway.

A model that does not beat this row has learned nothing a threshold could not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from feddp_eval.data.stain import REFERENCE_STAIN, StainProfile, hematoxylin_channel
from feddp_eval.data.types import Site, TileSet
from feddp_eval.metrics.utility import ConfusionCounts, confusion_counts, pooled, utility_scores

OTSU_BINS = 256  # scikit-image's default, so thresholds agree with ``threshold_otsu``


def otsu_threshold(values: ArrayLike, *, bins: int = OTSU_BINS) -> float:
    """Otsu's threshold of a set of values: the bin centre maximising the between-class variance.

    The same histogram (``bins`` equal bins over [min, max]) and tie-breaking as
    ``skimage.filters.threshold_otsu`` on float input (which gives integer images one
    bin per integer value instead); values above the threshold are foreground.

    Args:
        values: any array of finite numbers, at least one.
        bins: number of histogram bins, >= 2.

    Returns:
        The threshold; the value itself when all values are equal (nothing is above it).
    """
    flat = np.asarray(values, dtype=np.float64).ravel()
    if flat.size == 0 or not np.all(np.isfinite(flat)):
        raise ValueError(f"`values` must be a non-empty array of finite numbers, but got {flat.size} values")
    if bins < 2:
        raise ValueError(f"`bins` must be >= 2, but got {bins}")
    if flat.min() == flat.max():
        return float(flat[0])
    counts, edges = np.histogram(flat, bins=bins, range=(flat.min(), flat.max()))
    centres = (edges[:-1] + edges[1:]) / 2
    counts = counts.astype(np.float64)
    # The first and last bins hold the min and the max, so no class weight below is zero.
    weight_low = np.cumsum(counts)
    weight_high = np.cumsum(counts[::-1])[::-1]
    mean_low = np.cumsum(counts * centres) / weight_low
    mean_high = (np.cumsum((counts * centres)[::-1]) / weight_high[::-1])[::-1]
    between = weight_low[:-1] * weight_high[1:] * (mean_low[:-1] - mean_high[1:]) ** 2
    return float(centres[int(np.argmax(between))])


def otsu_segment(images: Tensor, *, stain: StainProfile = REFERENCE_STAIN) -> Tensor:
    """Nuclei where a tile's hematoxylin exceeds that tile's Otsu threshold.

    Args:
        images: (N, 3, H, W) RGB in [0, 1].
        stain: the basis to unmix with; the standard H&E matrix unless measuring an oracle.

    Returns:
        (N, 1, H, W) bool prediction.
    """
    hematoxylin = hematoxylin_channel(images.detach().cpu().double(), stain)
    thresholds = [otsu_threshold(tile.numpy()) for tile in hematoxylin]
    cut = torch.tensor(thresholds, dtype=hematoxylin.dtype).view(-1, 1, 1, 1)
    return hematoxylin > cut


def otsu_counts(tiles: TileSet, *, stain: StainProfile = REFERENCE_STAIN) -> ConfusionCounts:
    """Pixel confusion counts of :func:`otsu_segment` against the tiles' masks."""
    return confusion_counts(otsu_segment(tiles.images, stain=stain), tiles.masks.cpu() > 0.5)


def otsu_site_scores(
    sites: Sequence[Site], *, stain: StainProfile = REFERENCE_STAIN
) -> dict[str, dict[str, float]]:
    """Dice, Jaccard and pixel accuracy of hematoxylin-Otsu on each site's held-out tiles.

    Args:
        sites: the sites of a run; their ``test`` tiles are scored.
        stain: the basis to unmix with (see the module docstring).

    Returns:
        ``{site name: {"dice", "jaccard", "accuracy"}}`` plus ``"pooled"`` (counts summed
        over sites, as every utility row in the project is pooled).
    """
    counts = {site.name: otsu_counts(site.test, stain=stain) for site in sites}
    scores = {name: utility_scores(c) for name, c in counts.items()}
    scores["pooled"] = utility_scores(pooled(counts.values()))
    return scores
