"""Build what the server sees of one client round, or of several, from a run's captures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from attacks.base import AttackerKnowledge, ObservedRound, ServerView
from attacks.imprint.block import imprinted_shapes
from attacks.simulate import LocalRecipe, simulate_update
from feddp_eval.config import ModelConfig
from feddp_eval.data.types import TileSet
from feddp_eval.federated.capture import CapturedUpdate, sample_indices
from feddp_eval.rundir.check import check_tensor_file, expected_shapes


def local_recipe(
    metadata: dict[str, Any],
    knowledge: AttackerKnowledge,
    n_images: int,
    slots: dict[int, int] | None = None,
) -> LocalRecipe:
    """The client's local training as the attacker reconstructs it from capture metadata and knowledge.

    Unknown items fall back to the guesses documented on :class:`AttackerKnowledge`.

    Args:
        metadata: The capture's metadata.
        knowledge: What the attacker knows.
        n_images: Number of candidate tiles.
        slots: Candidate slot of each sample index (default: this round's indices in sorted order);
            a multi-round view passes the slots of the union of every observed round's indices.
    """
    used = sorted({i for batch in metadata["batches"] for i in batch})
    slot = slots if slots is not None else {index: position for position, index in enumerate(used)}
    steps = len(metadata["batches"]) if knowledge.local_steps else 1
    if knowledge.batch_split:
        batches = tuple(tuple(slot[i] for i in batch) for batch in metadata["batches"][:steps])
    else:
        batches = tuple(tuple(range(n_images)) for _ in range(steps))
    optimizer = metadata["optimizer"] if knowledge.optimizer else "sgd"
    return LocalRecipe(
        batches=batches,
        lr=float(metadata["lr"]) if knowledge.lr else 0.05,
        optimizer=optimizer,
        momentum=float(metadata.get("momentum") or 0.0) if knowledge.optimizer else 0.0,
        dice_weight=float(metadata["loss"]["dice_weight"]),
    )


def server_view(
    captures: CapturedUpdate | Sequence[CapturedUpdate],
    model: ModelConfig,
    knowledge: AttackerKnowledge,
    *,
    tile_size: int,
    masks: Tensor | None = None,
    prior: Tensor | None = None,
    foreground_prior: float | None = None,
    public_tiles: TileSet | None = None,
    release: Callable[[Tensor, LocalRecipe, torch.Generator], Tensor] | None = None,
) -> ServerView:
    """The server's view of one captured client round, or of several rounds of one client inverted
    jointly on one set of candidates (a sequence of captures, even of one).

    Several rounds: the candidates are the union of the tiles the rounds used (:func:`sample_indices`,
    in that order); each round's recipe indexes into them and is simulated from that round's global
    weights. ``masks`` and ``prior`` follow the same order. With ``knowledge.batch_split`` withheld,
    tiles cannot be told apart across rounds, and every step is assumed to use every candidate.

    Args:
        captures: The captured update and its metadata, or the observed rounds of one site (at
            least one) in round order.
        model: Architecture (the server built it).
        knowledge: What the attacker knows.
        tile_size: Tile edge in pixels.
        masks: The true masks (of the union), handed over only when ``knowledge.mask == "known"``.
        prior: Public guess: mean colour (3,), mean tile (3, H, W) or one tile per candidate.
        foreground_prior: Public mean foreground fraction of the site.
        public_tiles: Tiles of the site's look the server may hold, for an attack that learns from
            them (``Attack.public_tiles_wanted``).
        release: The client's defense as it releases simulated one-tile rounds (``ServerView.release``).
    """
    if knowledge.mask == "known" and masks is None:
        raise ValueError("knowledge.mask is 'known' but no masks were handed to the view")
    public = {
        "model": model,
        "tile_size": tile_size,
        "masks": masks if knowledge.mask == "known" else None,
        "knowledge": knowledge,
        "prior": prior,
        "foreground_prior": foreground_prior,
        "public_tiles": public_tiles,
        "release": release,
    }
    if isinstance(captures, CapturedUpdate):
        return _one_round(captures, knowledge, public)
    return _joint_rounds(captures, knowledge, public)


def _one_round(capture: CapturedUpdate, knowledge: AttackerKnowledge, public: dict[str, Any]) -> ServerView:
    metadata = capture.metadata
    n_used = len({i for batch in metadata["batches"] for i in batch})
    n_images = n_used if knowledge.n_samples else int(metadata["batch_size"])
    # Names, shapes and sizes are checked against the model from the headers, before any data is read.
    expected = expected_shapes(public["model"])
    if (sent := metadata.get("model")) is not None:  # a malicious server sent its imprinted model
        expected = imprinted_shapes(expected, bins=int(sent.get("bins", 0)), tile_size=public["tile_size"])
    check_tensor_file(capture.file("update_file"), expected, what="the captured update")
    check_tensor_file(capture.file("global_file"), expected, what="the weights sent")
    return ServerView(
        update=capture.load_update(),
        global_weights=capture.load_global(),
        recipe=local_recipe(metadata, knowledge, n_images),
        n_images=n_images,
        **public,
    )


def _joint_rounds(
    captures: Sequence[CapturedUpdate], knowledge: AttackerKnowledge, public: dict[str, Any]
) -> ServerView:
    if not captures:
        raise ValueError("a multi-round view needs at least one captured round")
    sites = sorted({c.site_index for c in captures})
    if len(sites) != 1:
        raise ValueError(f"a multi-round view inverts one client's rounds, but got sites {sites}")
    used = sample_indices(captures)
    batch = max(int(c.metadata["batch_size"]) for c in captures)
    n_images = len(used) if knowledge.n_samples else batch
    slots = {index: position for position, index in enumerate(used)}
    rounds = tuple(
        ObservedRound(
            round=c.round,
            update=c.load_update(),
            global_weights=c.load_global(),
            recipe=local_recipe(c.metadata, knowledge, n_images, slots),
        )
        for c in sorted(captures, key=lambda c: c.round)
    )
    first = rounds[0]
    return ServerView(
        update=first.update,
        global_weights=first.global_weights,
        recipe=first.recipe,
        n_images=n_images,
        rounds=rounds,
        **public,
    )


def simulated_view(
    model: ModelConfig,
    images: Tensor,
    masks: Tensor,
    recipe: LocalRecipe,
    *,
    prior: Tensor | None = None,
    knowledge: AttackerKnowledge | None = None,
    foreground_prior: float | None = None,
    seed: int = 0,
) -> ServerView:
    """What the server would see of a client round replayed on ``images``/``masks`` from a freshly
    initialised U-Net (``torch.manual_seed(seed)``): for benchmarks and tests that need an update
    without a training run.

    Args:
        model: The U-Net's shape (its weights are drawn from ``seed``).
        images: (N, 3, H, W) the client's tiles; ``masks``: (N, 1, H, W) their masks.
        recipe: The client's local steps.
        prior: The attacker's public prior (a colour or tiles), if any.
        knowledge: What the attacker knows (default :class:`AttackerKnowledge`); the view carries
            the masks only when it knows them.
        foreground_prior: The public foreground fraction (default: the masks' own).
        seed: Seed of the U-Net's initial (global) weights.
    """
    from feddp_eval.models.unet import UNet

    knowledge = knowledge or AttackerKnowledge()
    torch.manual_seed(seed)
    net = UNet.from_config(model)
    weights = {k: v.detach() for k, v in net.named_parameters()}
    update = simulate_update(net, weights, images, masks, recipe)
    return ServerView(
        update={k: v.detach() for k, v in update.items()},
        global_weights=weights,
        model=model,
        recipe=recipe,
        n_images=len(images),
        tile_size=images.shape[-1],
        masks=masks if knowledge.mask == "known" else None,
        knowledge=knowledge,
        prior=prior,
        foreground_prior=float(masks.mean()) if foreground_prior is None else foreground_prior,
    )
