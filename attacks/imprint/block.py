"""The imprint attack's model modification: an imprint block in front of the U-Net.

Fowl, Geiping, Czaja, Goldblum, Goldstein, "Robbing the Fed" (ICLR 2022). The
server sends one client, in one round, a model whose first layer is a linear map
from the flattened tile to ``k`` bins, all bins reading the same statistic of the
tile (here its mean brightness) and biased at increasing thresholds::

    h_i = ReLU(s(x) − c_i),   s(x) = mean pixel value,   c_0 < c_1 < … < c_{k−1}

A tile is active in every bin whose threshold lies below its brightness. A
decoder maps the bins back to a small image-shaped perturbation added to the tile
(every bin through the *same* decoder column), so the U-Net behind it still sees
the tile, the client trains the whole model with its own loss, optimizer and
defense, and every bin receives the same upstream gradient ``a = ∂L/∂h`` from a
given tile. Hence for the tiles active in bin ``i`` (and only those)::

    ∂L/∂W_i = Σ a_t · x_t,     ∂L/∂b_i = Σ a_t,

and a tile alone between thresholds ``c_i`` and ``c_{i+1}`` is
``(∂L/∂W_i − ∂L/∂W_{i+1}) / (∂L/∂b_i − ∂L/∂b_{i+1})`` exactly. The learning rate
cancels in the ratio, so the same holds for the captured update of one local SGD
step (momentum only rescales it); over several steps the update sums gradients taken
at moved weights, and the ratio stays exact while later steps add the same gradient
to neighbouring bins (see ``gain``). Adam divides each coordinate by its own running
scale and breaks the ratio. Two tiles in one bin give their gradient-weighted blend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BODY = "body."  # parameter names of the U-Net behind it
ENCODER_WEIGHT = "imprint.encoder.weight"
ENCODER_BIAS = "imprint.encoder.bias"
DECODER_WEIGHT = "imprint.decoder.weight"


class ImprintBlock(nn.Module):
    """``x + D · ReLU((w + ΔW) · flatten(x) − c + Δb)`` on (B, 3, H, W) tiles; Opacus-valid.

    The server's projection ``w`` and thresholds ``c`` are fixed buffers; the learnable
    ``encoder`` (``ΔW``, ``Δb``) starts at zero. The gradients are those of one linear layer with
    weights ``w + ΔW`` and biases ``Δb − c``; keeping the large fixed values out of the parameters
    makes the captured update (``local − sent``) exact in float32, where a threshold of 0.7 would
    round away a bias update of 1e-7.
    """

    projection: Tensor
    thresholds: Tensor

    def __init__(self, tile_shape: Sequence[int], bins: int) -> None:
        super().__init__()
        self.tile_shape = tuple(int(s) for s in tile_shape)
        features = math.prod(self.tile_shape)
        self.register_buffer("projection", torch.zeros(bins, features))
        self.register_buffer("thresholds", torch.zeros(bins))
        self.encoder = nn.Linear(features, bins)
        self.decoder = nn.Linear(bins, features, bias=False)
        with torch.no_grad():
            self.encoder.weight.zero_()
            self.encoder.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        bins = torch.relu(F.linear(flat, self.projection, -self.thresholds) + self.encoder(flat))
        return x + self.decoder(bins).view(x.shape[0], *self.tile_shape)


class ImprintedModel(nn.Module):
    """The imprint block followed by the (unchanged) segmentation model."""

    def __init__(self, block: ImprintBlock, body: nn.Module) -> None:
        super().__init__()
        self.imprint = block
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.imprint(x))


def brightness_thresholds(mean: float, std: float, bins: int, *, spread: float = 1.5) -> list[float]:
    """Bin thresholds at equal-probability quantiles of N(mean, (spread·std)²), lowest at −∞-ish.

    The server knows a site's public brightness mean and standard deviation (from held-out
    tiles); it widens the spread because that estimate comes from a few tiles, and puts the
    lowest threshold at 0 so that no tile falls below every bin.

    Returns:
        ``bins`` increasing thresholds; ``thresholds[0] == 0``.
    """
    if bins < 2:
        raise ValueError(f"an imprint block needs at least 2 bins, but got {bins}")
    sigma = max(float(std) * spread, 1e-3)
    normal = NormalDist(float(mean), sigma)
    return [0.0] + [normal.inv_cdf(i / bins) for i in range(1, bins)]


@torch.no_grad()
def build_imprinted(
    body: nn.Module,
    tile_shape: Sequence[int],
    thresholds: Sequence[float],
    *,
    scale: float,
    gain: float = 1.0,
    generator: torch.Generator,
) -> ImprintedModel:
    """The model the malicious server sends: an imprint block with the given thresholds before ``body``.

    Args:
        body: The global U-Net (its weights are kept).
        tile_shape: (3, H, W).
        thresholds: Increasing bin thresholds on mean brightness.
        scale: Size of each decoder entry (random signs): how strongly the bins feed back into the
            tile. Small keeps the segmentation valid; the ratio that recovers a tile does not depend on it.
        gain: How much louder the bins speak in the update without perturbing the tile more: the fixed
            projection and thresholds are divided by ``gain`` and the decoder multiplied by it, so the
            bins' activations shrink, the perturbation stays, and the gradient reaching the (unscaled)
            learnable encoder grows ``gain``-fold. Louder bins survive more DP noise. Over several
            local steps a moderate gain (10–100) lets the first step move tiles between bins, which
            smears them; a large one (1e4) moves the bins' inputs so far that later steps add the
            same gradient to neighbouring bins (or none), and the slot differences keep the first
            step's tiles exactly (measured: README).
        generator: Source of the decoder's random signs.
    """
    block = ImprintBlock(tile_shape, len(thresholds))
    features = block.encoder.in_features
    if not gain > 0:
        raise ValueError(f"the imprint gain must be > 0, but got {gain}")
    block.projection.fill_(1.0 / (features * gain))  # every bin reads the tile's mean brightness
    block.thresholds.copy_(torch.as_tensor(list(thresholds), dtype=torch.float32) / gain)
    signs = torch.randint(0, 2, (features, 1), generator=generator).float() * 2 - 1
    block.decoder.weight.copy_((scale * gain * signs).expand(features, len(thresholds)))
    device = next(body.parameters()).device
    return ImprintedModel(block.to(device), body)


def imprinted_shapes(
    body: Mapping[str, tuple[int, ...]], *, bins: int, tile_size: int
) -> dict[str, tuple[int, ...]]:
    """Names and shapes of an imprinted model's parameters, from the U-Net's (``body``): the U-Net's
    under ``body.``, and the block of ``bins`` bins on 3 × ``tile_size`` × ``tile_size`` tiles."""
    features = 3 * tile_size * tile_size
    return {
        **{f"{BODY}{name}": shape for name, shape in body.items()},
        ENCODER_WEIGHT: (bins, features),
        ENCODER_BIAS: (bins,),
        DECODER_WEIGHT: (features, bins),
    }


def strip_imprint(update: dict[str, Tensor]) -> dict[str, Tensor]:
    """The segmentation model's part of an imprinted model's update, under the U-Net's own names."""
    return {name.removeprefix(BODY): value for name, value in update.items() if name.startswith(BODY)}


def slot_of(brightness: float, thresholds: Sequence[float]) -> int:
    """The slot a tile of this mean brightness falls into (``-1`` below every threshold)."""
    return sum(1 for c in thresholds if brightness > c) - 1
