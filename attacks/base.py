"""Attack plugins: the :class:`Attack` base class, its shared settings and the ``ATTACKS`` registry.

Every :class:`Attack` turns a :class:`~attacks.threat_model.ServerView` into a
:class:`~attacks.threat_model.Reconstruction` and names its threat model. Optimisation attacks
extend :class:`attacks.inversion.GradientInversion`, whose one loop holds restarts, projection to
the pixel box, the non-finite stop, keeping the best iterate, the time budget and progress. An
analytic attack (the malicious server's imprint) implements :meth:`Attack.reconstruct` itself.
The threat-model objects are importable from here as well as from :mod:`attacks.threat_model`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

import torch

from attacks.images import ImageKind, InitKind
from attacks.threat_model import (
    AttackerKnowledge,
    MaskKnowledge,
    ObservedRound,
    Observer,
    Progress,
    Reconstruction,
    ServerView,
)
from feddp_eval.config import AttackSettings
from feddp_eval.errors import ConfigError
from feddp_eval.federated.malicious import ModelModification
from feddp_eval.plugins import AttackCard, KnownLeak, file_attack
from feddp_eval.registry import Registry

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "AttackerKnowledge",
    "MaskKnowledge",
    "ObservedRound",
    "Observer",
    "Progress",
    "Reconstruction",
    "ServerView",
]


@dataclass(frozen=True)
class AttackConfig:
    """Settings every attack shares; subclasses add their own fields.

    Attributes:
        iterations: Optimisation steps per restart (default: the `quick` budget of `[attack]`).
        restarts: Independent starts, optimised as one batch; the best objective wins.
        time_budget: Stop after this many seconds (``None``: no limit).
        tolerance: Stop when the best objective moved less than this over the last 100 iterations.
        plateau: Stop on a plateau (``stopped = "plateau"``): checked every 25 iterations once 3/8 of
            the iterations have run (where Inverting Gradients first lowers its step), the loop stops when
            the best objective fell by less than this fraction of itself over the last 100 iterations.
            It reads only the objective, never the truth; 0 runs every iteration. The toolkit's
            ``[attack] plateau`` sets it (0.01); an attack built directly gets 0.
        image: ``pixels`` (free RGB in the box) or ``stain`` (H&E optical-density prior).
        init: Start from the site's public mean colour (``prior``) or from ``uniform`` noise.
        mask_lr: Step size on the mask logits when the mask is unknown.
        fraction_weight: Weight of the foreground-fraction penalty when the mask is unknown.
        mask_model: Unknown masks as ``free`` per-pixel logits, or tied to the reconstruction's
            haematoxylin through ``stain`` (needs ``image="stain"``).
        colour_weight: Weight of a penalty holding each tile's mean colour at the site's public
            mean colour. GroupNorm makes the update nearly blind to a tile's global colour, so
            without it the colour drifts; 0 turns it off (and it is off without a prior).
        refine: L-BFGS iterations (strong-Wolfe line search, free pixels) after the main loop,
            from its best iterate (:mod:`attacks.refine`); 0: none.
        refine_float64: Run the refinement in float64 (model, update and pixels).
    """

    # One default for the schedule: the "quick" budget of [attack] (AttackSettings.BUDGETS).
    iterations: int = AttackSettings.BUDGETS["quick"][0]
    restarts: int = AttackSettings.BUDGETS["quick"][1]
    time_budget: float | None = None
    tolerance: float = 0.0
    plateau: float = 0.0
    image: ImageKind = "pixels"
    init: InitKind = "uniform"
    mask_lr: float = 0.1
    fraction_weight: float = 1.0
    colour_weight: float = 0.0
    mask_model: Literal["free", "stain"] = "free"
    refine: int = 0
    refine_float64: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.iterations < 1:
            problems.append(f"`iterations` must be >= 1, but got {self.iterations}")
        if self.restarts < 1:
            problems.append(f"`restarts` must be >= 1, but got {self.restarts}")
        if self.time_budget is not None and self.time_budget <= 0:
            problems.append(f"`time_budget` must be > 0 seconds, but got {self.time_budget}")
        if self.image not in ("pixels", "stain"):
            problems.append(f"`image` must be 'pixels' or 'stain', but got {self.image!r}")
        if not 0 <= self.plateau < 1:
            problems.append(f"`plateau` must be in [0, 1) (a fraction), but got {self.plateau}")
        if self.refine < 0:
            problems.append(f"`refine` must be >= 0 L-BFGS iterations, but got {self.refine}")
        if self.init not in ("prior", "uniform"):
            problems.append(f"`init` must be 'prior' or 'uniform', but got {self.init!r}")
        if problems:
            raise ConfigError(problems)


class Attack(ABC):
    """Base of every registered reconstruction attack: settings, threat model, ``reconstruct``.

    Subclasses set ``Config`` (a frozen dataclass extending :class:`AttackConfig`) and
    implement :meth:`run` (what :meth:`reconstruct` does with its options); optimisation attacks
    extend :class:`~attacks.inversion.GradientInversion`.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    # Who attacks: an honest-but-curious server only reads updates; a malicious one also changes the
    # model it sends (and so the training run). Results of the two are never mixed on one curve.
    threat: ClassVar[str] = "honest-but-curious server"
    # A malicious server's attack names the modification of the model it sends (which trains a run of
    # its own) and the [attack] settings that shape it, as ``{key in the config hash: AttackSettings
    # field}``; ``None``: the attack only reads the captured updates.
    modifies_model: ClassVar[str | None] = None
    modification_settings: ClassVar[Mapping[str, str]] = {}
    Config: ClassVar[type[AttackConfig]] = AttackConfig
    # Named settings over ``Config``'s defaults that ``[attack] recipe`` selects (``default``: none).
    recipes: ClassVar[Mapping[str, Mapping[str, object]]] = {"default": {}}
    # What the attack rebuilt where the update is known to leak (the report prints it beside an honest
    # server's verdicts); ``None``: not measured.
    known_leak: ClassVar[KnownLeak | None] = None

    def __init__(self, config: AttackConfig | None = None, **overrides: Any) -> None:
        base = config or self.Config()
        known = {f.name for f in fields(base)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown {self.name} settings {unknown}; known: {sorted(known)}")
        self.config = type(base)(**{**{f.name: getattr(base, f.name) for f in fields(base)}, **overrides})

    @classmethod
    def model_modification(cls, settings: AttackSettings) -> ModelModification | None:
        """The malicious server this attack needs, built from the ``[attack]`` settings (its
        ``modification_settings``), which the training run sends the target; ``None`` when the attack
        only reads updates (``modifies_model`` is ``None``)."""
        return None

    def public_tiles_wanted(self) -> int:
        """How many public tiles of the site's look the attack learns from (``ServerView.public_tiles``,
        which the attack workflow then draws for it); 0: it learns from none."""
        return 0

    def public_source(self) -> str:
        """Where those public tiles come from: a folder of ``images/`` + ``masks/`` pairs the server
        holds, none of them a client's, or ``""``: the embedded generator with the attacked site's
        stain (synthetic data only)."""
        return ""

    def public_description(self) -> str:
        """Those public tiles in words, for the threat line of tables and reports."""
        if folder := self.public_source():
            return f"from {folder}"
        return "of the site's look (the synthetic generator with the site's stain, other seeds)"

    def __repr__(self) -> str:
        settings = ", ".join(f"{f.name}={getattr(self.config, f.name)!r}" for f in fields(self.config))
        return f"{type(self).__name__}({settings})"

    def reconstruct(
        self,
        view: ServerView,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        progress: Progress | None = None,
        observer: Observer | None = None,
        observe_every: int = 25,
        start: torch.Tensor | None = None,
    ) -> Reconstruction:
        """The tiles (and masks) the attacker recovers from ``view``.

        Args:
            view: What the server sees.
            seed: Seed of any random start.
            device: Where to compute.
            progress: Called with (iteration, total, best objective) as work proceeds.
            observer: Called every ``observe_every`` iterations with (iteration, best images so
                far, their objective); a caller may score them (the attack never reads the truth).
            observe_every: Iterations between ``observer`` calls (>= 1).
            start: (N, 3, H, W) tiles in [0, 1] to start every restart from instead of the
                attack's own start. For basin benchmarks (start near the truth: does the attack come
                back?); the attack workflow never passes it, so the attack never reads the truth.
        """
        if observe_every < 1:
            raise ValueError(f"`observe_every` must be >= 1 iteration, but got {observe_every}")
        return self.run(
            view, RunOptions(seed, torch.device(device), progress, observer, observe_every, start)
        )

    @abstractmethod
    def run(self, view: ServerView, options: RunOptions) -> Reconstruction:
        """:meth:`reconstruct`'s work, with its options checked and gathered; each attack implements it."""


@dataclass(frozen=True)
class RunOptions:
    """How :meth:`Attack.reconstruct` was asked to run (see its arguments)."""

    seed: int
    device: torch.device
    progress: Progress | None
    observer: Observer | None
    observe_every: int
    start: torch.Tensor | None = None


def card(cls: type[Attack]) -> AttackCard:
    """What a registered attack declares, as the core and the report read it."""
    return AttackCard(
        name=cls.name,
        threat=cls.threat,
        modifies_model=cls.modifies_model,
        modification_settings=tuple(cls.modification_settings.items()),
        recipes=tuple(cls.recipes),
        known_leak=cls.known_leak,
    )


# Each attack files its card as it registers: the config hash, validation and the sweep read it.
ATTACKS: Registry[Attack] = Registry("attack", on_register=lambda cls: file_attack(card(cls)))
