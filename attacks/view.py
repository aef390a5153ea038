"""Build what the server sees of one client round from a run's captures."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from attacks.base import AttackerKnowledge, ServerView
from attacks.simulate import LocalRecipe
from feddp_eval.config import ModelConfig
from feddp_eval.federated.capture import CapturedUpdate
from feddp_eval.runcheck import check_tensor_file, expected_shapes


def local_recipe(metadata: dict[str, Any], knowledge: AttackerKnowledge, n_images: int) -> LocalRecipe:
    """The client's local training as the attacker reconstructs it from capture metadata and knowledge.

    Unknown items fall back to the guesses documented on :class:`AttackerKnowledge`.
    """
    used = sorted({i for batch in metadata["batches"] for i in batch})
    slot = {index: position for position, index in enumerate(used)}
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
    capture: CapturedUpdate,
    model: ModelConfig,
    knowledge: AttackerKnowledge,
    *,
    tile_size: int,
    masks: Tensor | None = None,
    prior: Tensor | None = None,
    foreground_prior: float | None = None,
) -> ServerView:
    """The server's view of a captured client round.

    Args:
        capture: The captured update and its metadata.
        model: Architecture (the server built it).
        knowledge: What the attacker knows.
        tile_size: Tile edge in pixels.
        masks: The true masks, handed over only when ``knowledge.mask == "known"``.
        prior: Public mean tile of the site (3,) or (3, H, W).
        foreground_prior: Public mean foreground fraction of the site.
    """
    metadata = capture.metadata
    n_used = len({i for batch in metadata["batches"] for i in batch})
    n_images = n_used if knowledge.n_samples else int(metadata["batch_size"])
    if knowledge.mask == "known" and masks is None:
        raise ValueError("knowledge.mask is 'known' but no masks were handed to the view")
    # Names, shapes and sizes are checked against the model from the headers, before any data is read.
    expected = expected_shapes(model, tile_size=tile_size, imprint=metadata.get("model"))
    check_tensor_file(capture.file("update_file"), expected, what="the captured update")
    check_tensor_file(capture.file("global_file"), expected, what="the weights sent")
    return ServerView(
        update=capture.load_update(),
        global_weights=capture.load_global(),
        model=model,
        recipe=local_recipe(metadata, knowledge, n_images),
        n_images=n_images,
        tile_size=tile_size,
        masks=masks if knowledge.mask == "known" else None,
        knowledge=knowledge,
        prior=prior,
        foreground_prior=foreground_prior,
    )
