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

from collections.abc import Sequence
from functools import partial

import numpy as np
import torch

from feddp_eval.config import Difficulty
from feddp_eval.data.checks import check_at_least, check_difficulty
from feddp_eval.data.hard import synthesize_hard
from feddp_eval.data.preview import save_tile_grid
from feddp_eval.data.stain import REFERENCE_STAIN, StainProfile, hematoxylin_channel, site_stain
from feddp_eval.data.tissue import SENSOR_NOISE, draw_lumen, draw_nuclei, draw_stroma, render
from feddp_eval.data.types import Site, TileSet
from feddp_eval.errors import ConfigError

__all__ = [
    "REFERENCE_STAIN",
    "StainProfile",
    "hematoxylin_channel",
    "save_tile_grid",
    "site_stain",
    "synthesize_tiles",
    "synthetic_sites",
]


def synthesize_tiles(
    n: int,
    *,
    stain: StainProfile = REFERENCE_STAIN,
    tile_size: int = 64,
    seed: int = 0,
    difficulty: Difficulty = "easy",
    sensor_noise: float = SENSOR_NOISE,
) -> TileSet:
    """Draw ``n`` synthetic H&E tiles and their exact nuclei masks.

    Args:
        n: number of tiles, >= 0.
        stain: stain vectors and intensities of the site.
        tile_size: side of the square tiles in pixels, >= 8.
        seed: seed of ``numpy.random.default_rng``; equal seeds give equal tiles.
        difficulty: ``"easy"``, or ``"hard"`` for the model of :mod:`feddp_eval.data.hard`
            (crowded, pale and hyperchromatic nuclei, look-alikes, blur, stain drift).
        sensor_noise: s.d. of the i.i.d. Gaussian sensor noise added last, >= 0 (0.02 by default,
            about 34 dB PSNR against the noise-free rendering). The noise is drawn whatever its size,
            so 0 gives the same tiles without it (benchmarks use that to tell structure from noise).

    Returns:
        Images (n, 3, S, S) float32 in [0, 1] and masks (n, 1, S, S) float32 in {0, 1}.
    """
    check_at_least("n", n, 0)
    check_at_least("tile_size", tile_size, 8)
    check_at_least("seed", seed, 0)
    check_difficulty(difficulty)
    if not sensor_noise >= 0:
        raise ConfigError(f"`sensor_noise` must be >= 0, but got {sensor_noise!r}")
    rng = np.random.default_rng(seed)
    shape = (n, tile_size, tile_size)
    if difficulty == "hard":
        images, mask = synthesize_hard(rng, shape, stain, sensor_noise)
    else:
        lumen = draw_lumen(rng, shape)
        nucleus_conc, mask = draw_nuclei(rng, shape, lumen)
        h_conc, e_conc = draw_stroma(rng, shape, lumen, mask)
        images = render(rng, h_conc + nucleus_conc, e_conc, stain, sensor_noise)
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
    difficulty: Difficulty = "easy",
    sensor_noise: float = SENSOR_NOISE,
) -> list[Site]:
    """Sites ``site-0``, ``site-1``, ... each with its own stain and tiles.

    Args:
        n_sites: number of sites, >= 1.
        train_tiles: training tiles per site: one count for all, or one per site.
        test_tiles: held-out tiles per site.
        tile_size: side of the square tiles in pixels, >= 8.
        seed: experiment seed; stains and tiles of every site and split derive from it.
        difficulty: ``"easy"`` or ``"hard"`` (see :func:`synthesize_tiles`).
        sensor_noise: s.d. of the sensor noise (see :func:`synthesize_tiles`).

    Returns:
        One :class:`Site` per index, whose ``info`` records the source, stain and seed
        (and the difficulty when it is not the default).
    """
    check_at_least("n_sites", n_sites, 1)
    train_counts = _per_site_counts(train_tiles, n_sites)
    check_at_least("test_tiles", test_tiles, 0)
    check_difficulty(difficulty)
    sites = []
    for index in range(n_sites):
        stain = site_stain(index, seed)
        train_seed, test_seed = (_split_seed(seed, index, split) for split in (0, 1))
        draw = partial(
            synthesize_tiles,
            stain=stain,
            tile_size=tile_size,
            difficulty=difficulty,
            sensor_noise=sensor_noise,
        )
        info: dict[str, object] = {"source": "synthetic", "stain": stain.to_dict(), "seed": seed}
        if difficulty != "easy":
            info["difficulty"] = difficulty
        sites.append(
            Site(
                name=f"site-{index}",
                train=draw(train_counts[index], seed=train_seed),
                test=draw(test_tiles, seed=test_seed),
                info=info,
            )
        )
    return sites


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
        check_at_least("train_tiles", count, 0)
    return [int(count) for count in counts]


def _split_seed(seed: int, site_index: int, split: int) -> int:
    """A tile seed for (site, split): SeedSequence children never collide in practice."""
    sequence = np.random.SeedSequence(seed, spawn_key=(site_index, split))
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
