"""What the curious server records, and — stored apart — what only scoring may read.

Layout inside a run directory::

    captures/round-0003/global.safetensors    global weights the round started from
    captures/round-0003/site-1.safetensors    the update site 1 released that round
    captures/round-0003/site-1.json           its metadata (hyper-parameters, batches, defense)
    captures/round-0003/site-1-global.safetensors   only when a malicious server sent site 1 a
                                              modified model: the weights it sent instead
    ground_truth/site-1.safetensors           site 1's training tiles and masks (never read by attacks)

Batches in the metadata index into the site's training tiles, so the ground
truth of a client round is ``ground_truth/site-k.safetensors`` at those indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from feddp_eval.data.types import TileSet
from feddp_eval.errors import RunDirError
from feddp_eval.io import load_tensors, read_json, save_tensors, write_json
from feddp_eval.rundir.check import capture_problems, inside, safetensors_shapes

CAPTURES = "captures"
GROUND_TRUTH = "ground_truth"


def _round_dir(run_dir: Path, round_index: int) -> Path:
    return run_dir / CAPTURES / f"round-{round_index:04d}"


class CaptureWriter:
    """Writes every update the server receives, exactly as released, with its metadata."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def write_global(self, round_index: int, weights: dict[str, Tensor]) -> None:
        save_tensors(_round_dir(self.run_dir, round_index) / "global.safetensors", weights)

    def write_update(
        self,
        round_index: int,
        site_index: int,
        update: dict[str, Tensor],
        metadata: dict[str, Any],
        *,
        global_weights: dict[str, Tensor] | None = None,
    ) -> None:
        """Write a released update; ``global_weights``: what a malicious server sent this client
        instead of the round's global model (saved beside it as ``site-<k>-global.safetensors``)."""
        folder = _round_dir(self.run_dir, round_index)
        save_tensors(folder / f"site-{site_index}.safetensors", update)
        global_file = "global.safetensors"
        if global_weights is not None:
            global_file = f"site-{site_index}-global.safetensors"
            save_tensors(folder / global_file, global_weights)
        write_json(
            folder / f"site-{site_index}.json",
            {
                **metadata,
                "round": round_index,
                "site_index": site_index,
                "update_file": f"site-{site_index}.safetensors",
                "global_file": global_file,
            },
        )

    def write_ground_truth(self, site_index: int, tiles: TileSet) -> None:
        save_tensors(
            self.run_dir / GROUND_TRUTH / f"site-{site_index}.safetensors",
            {"images": tiles.images, "masks": tiles.masks},
        )


@dataclass(frozen=True)
class CapturedUpdate:
    """One released update as the server saw it: metadata now, tensors on demand."""

    folder: Path
    metadata: dict[str, Any]

    @property
    def round(self) -> int:
        return int(self.metadata["round"])

    @property
    def site_index(self) -> int:
        return int(self.metadata["site_index"])

    @property
    def run_dir(self) -> Path:
        return self.folder.parent.parent

    def file(self, field: str) -> Path:
        """The file a metadata ``field`` names, refused unless it is a regular file inside the run."""
        source = self.folder / f"site-{self.site_index}.json"
        return inside(self.folder, self.metadata[field], what=field, source=source, root=self.run_dir)

    def load_update(self) -> dict[str, Tensor]:
        return load_tensors(self.file("update_file"))

    def load_global(self) -> dict[str, Tensor]:
        return load_tensors(self.file("global_file"))


def list_captures(run_dir: str | Path) -> list[CapturedUpdate]:
    """Every captured update of a run, ordered by (round, site)."""
    root = Path(run_dir) / CAPTURES
    if not root.is_dir():
        raise RunDirError(f"{root} does not exist; train with capture enabled (`capture = true`) first")
    found = []
    for path in root.glob("round-*/site-*.json"):
        metadata = read_json(path)
        problems = capture_problems(metadata)
        if problems:
            raise RunDirError(f"{path}: {problems[0]}; re-capture the run (train it again)")
        found.append(CapturedUpdate(path.parent, metadata))
    return sorted(found, key=lambda c: (c.round, c.site_index))


def sample_indices(captures: Sequence[CapturedUpdate]) -> list[int]:
    """Sorted union of the sample indices every local step of ``captures`` used.

    The indices are the site's own tile numbers, the same in every round, so they identify a tile
    across rounds.
    """
    return sorted({i for c in captures for batch in c.metadata["batches"] for i in batch})


def load_ground_truth(
    run_dir: str | Path,
    captures: CapturedUpdate | Sequence[CapturedUpdate],
    *,
    tile_size: int | None = None,
) -> TileSet:
    """The tiles one captured client round (or several rounds of one site) trained on, in
    :func:`sample_indices` order (scoring only).

    Raises:
        RunDirError: The ground-truth file is missing, malformed, of another tile size, or has
            fewer tiles than the capture's batches index.
    """
    rounds = [captures] if isinstance(captures, CapturedUpdate) else list(captures)
    capture = rounds[0]
    path = Path(run_dir) / GROUND_TRUTH / f"site-{capture.site_index}.safetensors"
    if path.is_symlink() or path.exists():  # a symlink out of the run, or a device, is refused
        inside(path.parent, path.name, what="ground truth", source=path, root=Path(run_dir))
    if tile_size and path.is_file():  # sized against the site's tiles before it is read
        tiles = max(int(capture.metadata["n_samples"]), 1)
        safetensors_shapes(path, max_bytes=8 * tiles * 4 * tile_size * tile_size + 2**20)
    tensors = load_tensors(path)
    images, masks = tensors.get("images"), tensors.get("masks")
    size = tile_size or (images.shape[-1] if images is not None else 0)
    if (
        images is None
        or masks is None
        or images.dim() != 4
        or tuple(images.shape[1:]) != (3, size, size)
        or tuple(masks.shape) != (images.shape[0], 1, size, size)
    ):
        shapes = {k: list(v.shape) for k, v in tensors.items()}
        raise RunDirError(
            f"{path} must hold `images` (N, 3, {size}, {size}) and `masks` (N, 1, {size}, {size}), but "
            f"holds {shapes}; retrain the run"
        )
    if not (bool(images.isfinite().all()) and bool(masks.isfinite().all())):
        raise RunDirError(f"{path} holds NaN or inf pixels; retrain the run")
    used = sample_indices(rounds)
    if used and used[-1] >= images.shape[0]:
        raise RunDirError(
            f"{capture.folder / f'site-{capture.site_index}.json'}: batch index {used[-1]} is out of range "
            f"for the {images.shape[0]} tiles in {path}; re-capture the run"
        )
    return TileSet(images, masks).subset(used)
