"""A small U-Net for binary segmentation that Opacus can privatise.

GroupNorm instead of BatchNorm (per-sample gradients need samples to be
independent), no in-place activations, bilinear upsampling instead of
transposed convolutions (which have no Opacus grad sampler in every mode).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from feddp_eval.config import ModelConfig


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    # The largest group count <= `groups` that divides the channels.
    return nn.GroupNorm(math.gcd(groups, channels), channels)


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


class ConvBlock(nn.Sequential):
    """Two (Conv3×3 → GroupNorm → activation) layers."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, activation: str = "relu") -> None:
        act = ACTIVATIONS[activation]
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            _norm(out_channels, groups),
            act(),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            _norm(out_channels, groups),
            act(),
        )


class UNet(nn.Module):
    """U-Net: ``depth`` poolings, ``width`` channels at full resolution, doubling per level.

    Input: (B, 3, H, W) float in [0, 1], H and W divisible by ``2**depth``.
    Output: (B, 1, H, W) logits of the foreground (nuclei) class.
    ``activation`` is ``relu`` (default), or the smooth ``gelu`` / ``sigmoid``: gradient
    inversion is far easier through smooth activations, which is worth measuring.
    """

    def __init__(
        self,
        *,
        depth: int = 2,
        width: int = 16,
        groups: int = 8,
        in_channels: int = 3,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if depth < 1 or width < 1 or groups < 1:
            raise ValueError(f"depth, width and groups must be >= 1, but got {depth}, {width}, {groups}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, but got {activation!r}")
        self.depth, self.width = depth, width
        channels = [width * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList([ConvBlock(in_channels, channels[0], groups, activation)])
        self.down.extend(ConvBlock(channels[i], channels[i + 1], groups, activation) for i in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.up = nn.ModuleList(
            ConvBlock(channels[i + 1] + channels[i], channels[i], groups, activation)
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(channels[0], 1, 1)

    @classmethod
    def from_config(cls, config: ModelConfig) -> UNet:
        """The U-Net a ``[model]`` section describes (as trained, and as an attacker rebuilds it)."""
        return cls(depth=config.depth, width=config.width, groups=config.groups, activation=config.activation)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for level, block in enumerate(self.down):
            x = block(x if level == 0 else self.pool(x))
            skips.append(x)
        skips.pop()
        for block in self.up:
            x = block(torch.cat([self.upsample(x), skips.pop()], dim=1))
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
