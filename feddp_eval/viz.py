"""Pictures a person looks at: true tiles beside their reconstructions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from feddp_eval.data.types import TileSet


def save_comparison_grid(path: str | Path, truth: TileSet, arms: Sequence[tuple[str, Any]]) -> Path:
    """PNG: one row per tile; columns: true tile, true mask, then image and mask of each arm.

    Args:
        path: Where to write the PNG.
        truth: The attacked tiles (N tiles).
        arms: ``(label, reconstruction)`` pairs; reconstructions carry ``images`` (N, 3, H, W) and
            ``masks`` (N, 1, H, W), already in the order of ``truth`` or matched by the caller.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from feddp_eval.metrics.privacy import match_reconstructions

    n = len(truth)
    columns = 2 + 2 * len(arms)
    fig, axes = plt.subplots(n, columns, figsize=(1.6 * columns, 1.6 * n + 0.5), squeeze=False)
    titles = ["true tile", "true mask"]
    for label, _ in arms:
        titles += [f"{label}\nimage", f"{label}\nmask"]
    ordered: list[list[int | None]] = []
    for _, recon in arms:
        recon_index, truth_index = match_reconstructions(recon.images, truth.images)
        matched = dict(zip(truth_index, recon_index, strict=True))
        ordered.append([matched.get(i) for i in range(n)])
    for row in range(n):
        cells: list[Tensor | None] = [truth.images[row].permute(1, 2, 0), truth.masks[row, 0]]
        for (_, recon), order in zip(arms, ordered, strict=True):
            k = order[row]
            if k is None:
                cells += [None, None]
            else:
                cells += [recon.images[k].clamp(0, 1).permute(1, 2, 0), recon.masks[k, 0]]
        for col, cell in enumerate(cells):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if cell is not None:
                ax.imshow(
                    cell.numpy(),
                    cmap="gray" if cell.ndim == 2 else None,
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
