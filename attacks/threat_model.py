"""The threat model as objects: what the server knows, what it sees, and what an attack returns.

What the server may see (:class:`ServerView`) is built from a captured update and
:class:`AttackerKnowledge` (see :mod:`attacks.view`); the client's true tiles never enter it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Generator, Tensor

from attacks.simulate import LocalRecipe, Params
from feddp_eval.config import ModelConfig
from feddp_eval.data.types import TileSet
from feddp_eval.errors import ConfigError

MaskKnowledge = Literal["known", "unknown"]


@dataclass(frozen=True)
class AttackerKnowledge:
    """What the honest-but-curious server knows besides the update it received.

    Architecture, global weights and loss are always known to the server in this
    threat model. Each client hyper-parameter can be withheld; the attacker then
    falls back to the stated guess. ``mask="known"`` (default) hands the attacker
    the true masks: the most it could know (knowledge can be an upper bound; what an attack
    rebuilds with it is a lower bound on leakage, never an upper one).
    """

    lr: bool = True  # unknown: the cosine objective is scale-free, so only multi-step attacks suffer
    local_steps: bool = True  # unknown: assume one step
    batch_split: bool = True  # unknown: assume every step used every tile
    n_samples: bool = True  # unknown: assume one tile per sample of the batch size
    optimizer: bool = True  # unknown: assume plain SGD
    mask: MaskKnowledge = "known"

    def __post_init__(self) -> None:
        if self.mask not in ("known", "unknown"):
            raise ConfigError(f"`mask` must be 'known' or 'unknown', but got {self.mask!r}")


@dataclass(frozen=True)
class ObservedRound:
    """One client round the server observed: the released update, where it started, how it was made.

    Attributes:
        round: The federated round (1-based).
        update: The captured update, ``{parameter: tensor}``, exactly as released.
        global_weights: The global weights the round started from.
        recipe: The client's local training that round; its batch slots index the view's candidates.
    """

    round: int
    update: Params
    global_weights: Params
    recipe: LocalRecipe


@dataclass(frozen=True)
class ServerView:
    """Everything an attack may read: the released update(s) and what the server knows.

    A single-round view holds one update in ``update``/``global_weights``/``recipe``. A
    multi-round view also lists every observed round in ``rounds`` (the first of them repeated in
    ``update``/``global_weights``/``recipe``); the attack then inverts them jointly, with one set of
    candidate tiles that every round's recipe indexes into.

    Attributes:
        update: The captured update, ``{parameter: tensor}``, exactly as released.
        global_weights: The global weights the round started from.
        model: Architecture of the model.
        recipe: The client's local training as the attacker reconstructs it.
        n_images: How many distinct tiles to reconstruct (over all observed rounds).
        tile_size: Tile edge in pixels.
        masks: (n_images, 1, H, W) true masks when ``knowledge.mask == "known"``, else ``None``.
        knowledge: The knowledge this view was built under.
        prior: The prior baseline's guess of the tiles from public information, or ``None``: the
            site's mean colour (3,), or, when the masks are known, one mask-painted tile per image
            (N, 3, H, W): public nuclei colour inside the mask, public background colour outside.
        foreground_prior: Public mean foreground fraction of the site's masks, or ``None``.
        rounds: Every observed round when the view spans several; empty for a single-round view.
        release: ``release(updates, recipe, generator)``: the client's defense applied, in place, to
            (N, P) flat one-tile rounds the server simulates, from the defense's published settings
            in the capture, so that an attack learning from them sees what the client released (the
            attack workflow builds it from the defense plugin); ``None``: not known.
        public_tiles: Tiles (and masks) of the site's look that the server may legitimately hold,
            for an attack that learns from them (``Attack.public_tiles_wanted``), else ``None``.
    """

    update: Params
    global_weights: Params
    model: ModelConfig
    recipe: LocalRecipe
    n_images: int
    tile_size: int
    masks: Tensor | None
    knowledge: AttackerKnowledge
    prior: Tensor | None = None
    foreground_prior: float | None = None
    rounds: tuple[ObservedRound, ...] = ()
    release: Callable[[Tensor, LocalRecipe, Generator], Tensor] | None = None
    public_tiles: TileSet | None = None

    def __post_init__(self) -> None:
        for observed in self.rounds:
            used = {slot for batch in observed.recipe.batches for slot in batch}
            if used and (min(used) < 0 or max(used) >= self.n_images):
                raise ValueError(
                    f"round {observed.round}'s recipe uses candidate slots {sorted(used)} but the view has "
                    f"{self.n_images} candidates; build multi-round views with attacks.view.server_view "
                    "on a sequence of captures"
                )

    @property
    def observed(self) -> tuple[ObservedRound, ...]:
        """The rounds inverted jointly: ``rounds``, or the single round of a single-round view."""
        return self.rounds or (ObservedRound(0, self.update, self.global_weights, self.recipe),)


@dataclass(frozen=True)
class Reconstruction:
    """An attack's output: the best restart's best iterate.

    Attributes:
        images: (N, 3, H, W) float in [0, 1].
        masks: (N, 1, H, W) foreground probabilities (the given masks when known).
        objective: Objective value of the returned iterate.
        restart_objectives: Best objective of every restart.
        iterations: Iterations run (per restart, all in one batch).
        seconds: Wall-clock time.
        stopped: Why the loop ended: ``budget``, ``converged``, ``plateau``, ``time`` or ``non-finite``.
        history: (iteration, best objective over restarts) every few iterations.
        guess: (N, 3, H, W) the attack's own guess without the update, where it holds more than the
            view's prior (a learned attack's guess from the same public data, the bar its margin is
            read against); ``None``: the view's prior is its bar.
    """

    images: Tensor
    masks: Tensor
    objective: float
    restart_objectives: list[float]
    iterations: int
    seconds: float
    stopped: str
    history: list[tuple[int, float]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)  # attack-specific facts for the results row
    guess: Tensor | None = None


Progress = Callable[[int, int, float], None]  # (iteration, total, best objective)
# (iteration, best images so far (N, 3, H, W) in [0, 1], their objective); see Attack.reconstruct.
Observer = Callable[[int, Tensor, float], None]
