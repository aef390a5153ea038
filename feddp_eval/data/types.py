"""Plain containers for tiles, masks and sites."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class TileSet:
    """A stack of RGB tiles with their binary masks.

    Attributes:
        images: (N, 3, H, W) float32 in [0, 1].
        masks: (N, 1, H, W) float32 with values in {0, 1}.
    """

    images: Tensor
    masks: Tensor

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), but got {tuple(self.images.shape)}")
        expected = (self.images.shape[0], 1, *self.images.shape[2:])
        if tuple(self.masks.shape) != expected:
            raise ValueError(f"masks must be {expected}, but got {tuple(self.masks.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def tile_size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, indices: Sequence[int] | Tensor) -> TileSet:
        """Tiles at ``indices``, in that order."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return TileSet(self.images[index], self.masks[index])


@dataclass(frozen=True)
class Site:
    """One institution: its training tiles, its held-out tiles, and how it was made.

    ``info`` carries provenance (stain vectors of a synthetic site, source folder of
    a real one) as JSON-serialisable values.
    """

    name: str
    train: TileSet
    test: TileSet
    info: dict[str, object] = field(default_factory=dict)
