"""Pictures a person looks at: true tiles beside their reconstructions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from feddp_eval.data.types import TileSet

Cell = tuple[int, int]  # (arm, index): an arm of the grid and a tile or reconstruction of it


def grid_rows(arms: Sequence[tuple[str, TileSet, Any]]) -> tuple[list[Cell], list[list[Cell | None]]]:
    """Which true tile each row of the grid shows, and which reconstruction each column puts there.

    Arms may have attacked different tiles (DP-SGD's Poisson sampling draws its own batch), so each
    arm brings its own ``truth``. The rows are the distinct true tiles over all arms, in the order
    they first appear; the columns are the distinct labels (arms that share a label, such as each
    arm's prior, share a column). Each arm's reconstructions are matched to its own truth
    (:func:`~feddp_eval.metrics.privacy.match_reconstructions`).

    Returns:
        ``(arm, tile)`` of each row's true tile, and per column and row the ``(arm,
        reconstruction)`` shown there (``None``: that column's arms did not attack the tile).
    """
    from feddp_eval.metrics.privacy import match_reconstructions

    rows: list[Cell] = []
    labels = list(dict.fromkeys(label for label, _, _ in arms))
    cells: list[list[Cell | None]] = [[] for _ in labels]
    for a, (label, truth, recon) in enumerate(arms):
        placed = []
        for t in range(len(truth)):
            same = [r for r, (b, u) in enumerate(rows) if torch.equal(arms[b][1].images[u], truth.images[t])]
            if not same:
                rows.append((a, t))
                for column in cells:
                    column.append(None)
            placed.append(same[0] if same else len(rows) - 1)
        recon_index, truth_index = match_reconstructions(recon.images, truth.images)
        column = cells[labels.index(label)]
        for k, t in zip(recon_index, truth_index, strict=True):
            if column[placed[t]] is None:  # arms sharing a label: the first to attack a tile shows it
                column[placed[t]] = (a, k)
    return rows, cells


def save_comparison_grid(path: str | Path, arms: Sequence[tuple[str, TileSet, Any]]) -> Path:
    """PNG: one row per true tile; columns: true tile, true mask, then image and mask of each label.

    Args:
        path: Where to write the PNG.
        arms: ``(label, truth, reconstruction)``: the tiles an arm attacked (a ``TileSet``) and what
            it rebuilt of them (``images`` (N, 3, H, W) and ``masks`` (N, 1, H, W), in any order:
            they are matched to ``truth`` here). Arms with the same label share a column; a cell is
            blank where that column's arms did not attack the row's tile (see :func:`grid_rows`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(label for label, _, _ in arms))
    rows, cells = grid_rows(arms)
    n, columns = len(rows), 2 + 2 * len(labels)
    fig, axes = plt.subplots(n, columns, figsize=(1.6 * columns, 1.6 * n + 0.5), squeeze=False)
    titles = ["true tile", "true mask"]
    for label in labels:
        titles += [f"{label}\nimage", f"{label}\nmask"]
    for row, (a, t) in enumerate(rows):
        truth = arms[a][1]
        shown: list[Tensor | None] = [truth.images[t].permute(1, 2, 0), truth.masks[t, 0]]
        for column in cells:
            if (cell := column[row]) is None:
                shown += [None, None]
            else:
                recon, k = arms[cell[0]][2], cell[1]
                shown += [recon.images[k].clamp(0, 1).permute(1, 2, 0), recon.masks[k, 0]]
        for col, image in enumerate(shown):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if image is not None:
                ax.imshow(
                    image.numpy(),
                    cmap="gray" if image.ndim == 2 else None,
                    vmin=0,
                    vmax=1,
                    interpolation="nearest",
                )
            if row == 0:
                ax.set_title(titles[col], fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
