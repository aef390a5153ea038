"""Reconstruction gallery: per defense, the true tiles, the prior guess, then each noise's reconstruction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from feddp_eval.rundir.read import read_tiles
from reports.style import PORTRAIT, new_page
from reports.summary import SettingSummary, defense_rank, fmt_epsilon, fmt_noise

MAX_TILES = 4
ROWS_PER_PAGE = 8


@dataclass(frozen=True)
class GalleryRow:
    """One labelled row of pictures: ``images`` (N, 3, H, W) and optional ``masks`` (N, 1, H, W)."""

    label: str
    images: np.ndarray | None
    masks: np.ndarray | None = None
    note: str = ""


def gallery_pages(summaries: Sequence[SettingSummary], rows: Sequence[dict[str, Any]]) -> list[Figure]:
    """One or more portrait pages per defended defense (or one for the undefended run alone)."""
    first = min(((r.get("seed") or 0, r.get("target_site") or 0) for r in rows), default=(0, 0))
    attacks = list(dict.fromkeys(s.attack for s in summaries))
    pages: list[Figure] = []
    for attack in attacks:
        mine = [s for s in summaries if s.attack == attack]
        picked = {s.label: _pick(s, rows, first) for s in mine}
        defenses = sorted({s.defense for s in mine if s.defense != "none"}, key=defense_rank) or ["none"]
        reference = next((s for s in mine if s.defense == "none"), None)
        for defense in defenses:
            settings = [s for s in mine if s.defense == defense and s is not reference]
            shown = ([reference] if reference else []) + sorted(settings, key=lambda s: s.noise)
            name = f"{defense} ({attack})" if len(attacks) > 1 else defense
            pages += _defense_pages(name, shown, picked, first)
    return pages


def _pick(
    setting: SettingSummary, rows: Sequence[dict[str, Any]], first: tuple[int, int]
) -> dict[str, Any] | None:
    """The setting's row for the first seed/target, else its first row whose tiles can be read."""
    mine = setting.rows(rows)
    mine.sort(key=lambda r: ((r.get("seed") or 0, r.get("target_site") or 0) != first, r.get("seed") or 0))
    readable = [r for r in mine if r.get("tiles_path") is not None and r["tiles_path"].is_file()]
    return (readable or mine)[0] if mine else None


def _defense_pages(
    defense: str,
    shown: Sequence[SettingSummary],
    picked: dict[str, dict[str, Any] | None],
    first: tuple[int, int],
) -> list[Figure]:
    tiles = {
        s.label: read_tiles(row["tiles_path"]) if row else None
        for s, row in ((s, picked[s.label]) for s in shown)
    }
    mask_known = all((picked[s.label] or {}).get("mask") in ("known", None) for s in shown) and not any(
        (picked[s.label] or {}).get("mask_dice") is not None for s in shown
    )
    header, body = gallery_rows(shown, picked, tiles, first, mask_known)
    subtitle = _subtitle(picked, shown, first, mask_known)
    per_page = ROWS_PER_PAGE - len(header)
    chunks = [body[i : i + per_page] for i in range(0, len(body), per_page)] or [[]]
    pages = []
    for i, chunk in enumerate(chunks):
        part = f" ({i + 1}/{len(chunks)})" if len(chunks) > 1 else ""
        pages.append(_page(f"Reconstruction gallery: {defense}{part}", subtitle, header + chunk, mask_known))
    return pages


def gallery_rows(
    shown: Sequence[SettingSummary],
    picked: dict[str, dict[str, Any] | None],
    tiles: dict[str, dict[str, np.ndarray] | None],
    first: tuple[int, int],
    mask_known: bool,
) -> tuple[list[GalleryRow], list[GalleryRow]]:
    """The page's header (the first readable setting's true tiles) and its body: the prior guess, then
    each setting's reconstructions. A setting that attacked other tiles than the header's (DP-SGD's
    Poisson sampling draws its own batch) gets its own true tiles in the row above its
    reconstructions, so no reconstruction sits under a tile it is not of."""
    truth = next((t for t in tiles.values() if t is not None and "true_images" in t), None)
    header: list[GalleryRow] = []
    body: list[GalleryRow] = []
    if truth is not None:
        n = min(MAX_TILES, len(truth["true_images"]))
        if mask_known:
            header = [
                GalleryRow("true tiles", truth["true_images"][:n]),
                GalleryRow("true masks", _rgb(truth["true_masks"][:n])),
            ]
        else:
            header = [GalleryRow("true tiles and masks", truth["true_images"][:n], truth["true_masks"][:n])]
        body.append(GalleryRow(_prior_label(picked[shown[0].label] or {}), truth.get("prior_images", None)))
    for s in shown:
        own = tiles[s.label]
        if truth is not None and own is not None and "true_images" in own and not _same(own, truth):
            n = min(MAX_TILES, len(own["true_images"]))
            masks = None if mask_known else own["true_masks"][:n]
            body.append(
                GalleryRow(f"{_name(s)}: its own true tiles (another batch)", own["true_images"][:n], masks)
            )
        body.append(_setting_row(s, picked[s.label], own, first, mask_known))
    return header, body


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    """Whether two tiles files hold the same true tiles."""
    x, y = a["true_images"], b["true_images"]
    return bool(x.shape == y.shape and np.array_equal(x, y))


def _name(s: SettingSummary) -> str:
    return "no defense" if s.defense == "none" else f"σ={fmt_noise(s.noise)}"


def _setting_row(
    s: SettingSummary,
    row: dict[str, Any] | None,
    tiles: dict[str, np.ndarray] | None,
    first: tuple[int, int],
    mask_known: bool,
) -> GalleryRow:
    name = _name(s)
    if row is None:
        return GalleryRow(name, None, note="no result")
    psnr = row.get("psnr")
    label = name + (f" · PSNR {psnr:.1f} dB" if psnr is not None else "")
    if s.defense != "none":
        label += f" · ε = {fmt_epsilon(s)}"
    if (row.get("seed") or 0, row.get("target_site") or 0) != first:
        label += f" (seed {row.get('seed')}, site {row.get('target_site')})"
    if tiles is None or "images" not in tiles:
        return GalleryRow(
            label, None, note=f"tiles file missing or unreadable: {row.get('tiles') or 'not recorded'}"
        )
    n = min(MAX_TILES, len(tiles["images"]))
    return GalleryRow(label, tiles["images"][:n], None if mask_known else tiles.get("masks", None))


def _subtitle(
    picked: dict[str, dict[str, Any] | None],
    shown: Sequence[SettingSummary],
    first: tuple[int, int],
    mask_known: bool,
) -> str:
    row = next((picked[s.label] for s in shown if picked[s.label]), None) or {}
    rnd = row.get("target_round")
    where = f"seed {first[0]}, site {first[1]} attacked" + (f" in round {rnd}" if rnd is not None else "")
    masks = "masks known to the attacker" if mask_known else "reconstructed masks beside each image"
    return f"{where}; {masks}; reconstructions matched to the true tiles; up to {MAX_TILES} tiles."


def _prior_label(row: dict[str, Any]) -> str:
    """The prior row's label. With the masks known, the attacker's guess (and the stored prior_images) is
    the masks painted in the site's public colours, scored as ``mask_prior_psnr``."""
    painted = row.get("mask") == "known" and row.get("mask_prior_psnr") is not None
    psnr = row.get("mask_prior_psnr") if painted else row.get("prior_psnr")
    name = "prior guess: masks painted in the site's colours" if painted else "prior guess: site mean colour"
    return name + (f" · PSNR {psnr:.1f} dB" if psnr is not None else "")


def _rgb(masks: np.ndarray) -> np.ndarray:
    return np.repeat(masks, 3, axis=1)


def _page(title: str, subtitle: str, rows: Sequence[GalleryRow], mask_known: bool) -> Figure:
    fig = new_page(PORTRAIT)
    fig.text(0.06, 0.975, title, fontsize=15, weight="bold", va="top")
    fig.text(0.06, 0.948, subtitle, fontsize=8.5, va="top", color="#333333")
    ncols = MAX_TILES * (1 if mask_known else 2)
    used = len(rows)
    height = min(0.11, 0.86 / max(used, 1))
    grid = fig.add_gridspec(
        used,
        ncols,
        left=0.06,
        right=0.94 if not mask_known else 0.7,
        top=0.91,
        bottom=0.91 - height * used,
        hspace=0.35,
        wspace=0.06,
    )
    for r, row in enumerate(rows):
        axes = [fig.add_subplot(grid[r, c]) for c in range(ncols)]
        for ax in axes:
            ax.set_axis_off()
        axes[0].text(0.0, 1.06, row.label, transform=axes[0].transAxes, fontsize=8.5, ha="left", va="bottom")
        _fill(axes, row, mask_known)
    return fig


def _fill(axes: Sequence[Axes], row: GalleryRow, mask_known: bool) -> None:
    if row.images is None:
        axes[0].text(
            0.0,
            0.5,
            row.note or "not available",
            transform=axes[0].transAxes,
            fontsize=8,
            color="#D55E00",
            va="center",
        )
        return
    step = 1 if mask_known else 2
    for i, image in enumerate(row.images[:MAX_TILES]):
        axes[i * step].imshow(np.clip(image.transpose(1, 2, 0), 0, 1), vmin=0, vmax=1)
        if not mask_known and row.masks is not None:
            axes[i * step + 1].imshow(np.clip(row.masks[i, 0], 0, 1), cmap="gray", vmin=0, vmax=1)
