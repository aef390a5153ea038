"""Attack plugins: the threat model as objects, and the one optimisation loop they share.

What the server may see (:class:`ServerView`) is built from a captured update and
:class:`AttackerKnowledge`; the client's true tiles never enter this package. Every
:class:`Attack` turns a view into a :class:`Reconstruction` and names its threat
model. A :class:`GradientInversion` differs from another only by its objective, its
regularisers, its optimiser and what it optimises (image, or image + mask). Restarts,
projection to the pixel box, the non-finite stop, keeping the best iterate, the time
budget and progress live once, in :meth:`GradientInversion.reconstruct`. An analytic
attack (the malicious server's imprint) implements :meth:`Attack.reconstruct` itself.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.func import vmap

from attacks.images import ImageKind, ImageVariables, InitKind, init_images, mean_colours
from attacks.simulate import LocalRecipe, Params, flatten, simulate_update
from feddp_eval.config import ModelConfig
from feddp_eval.errors import ConfigError
from feddp_eval.registry import Registry

MaskKnowledge = Literal["known", "unknown"]


@dataclass(frozen=True)
class AttackerKnowledge:
    """What the honest-but-curious server knows besides the update it received.

    Architecture, global weights and loss are always known to the server in this
    threat model. Each client hyper-parameter can be withheld; the attacker then
    falls back to the stated guess. ``mask="known"`` (default) hands the attacker
    the true masks: the worst case, an upper bound on leakage.
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

    def __post_init__(self) -> None:
        for observed in self.rounds:
            used = {slot for batch in observed.recipe.batches for slot in batch}
            if used and (min(used) < 0 or max(used) >= self.n_images):
                raise ValueError(
                    f"round {observed.round}'s recipe uses candidate slots {sorted(used)} but the view has "
                    f"{self.n_images} candidates; build multi-round views with attacks.view.multi_round_view"
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
        stopped: Why the loop ended: ``budget``, ``converged``, ``time`` or ``non-finite``.
        history: (iteration, best objective over restarts) every few iterations.
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


Progress = Callable[[int, int, float], None]  # (iteration, total, best objective)
# (iteration, best images so far (N, 3, H, W) in [0, 1], their objective); see Attack.reconstruct.
Observer = Callable[[int, Tensor, float], None]


@dataclass(frozen=True)
class AttackConfig:
    """Settings every attack shares; subclasses add their own fields.

    Attributes:
        iterations: Optimisation steps per restart.
        restarts: Independent starts, optimised as one batch; the best objective wins.
        time_budget: Stop after this many seconds (``None``: no limit).
        tolerance: Stop when the best objective moved less than this over the last 100 iterations.
        image: ``pixels`` (free RGB in the box) or ``stain`` (H&E optical-density prior).
        init: Start from the site's public mean colour (``prior``) or from ``uniform`` noise.
        mask_lr: Step size on the mask logits when the mask is unknown.
        fraction_weight: Weight of the foreground-fraction penalty when the mask is unknown.
        mask_model: Unknown masks as ``free`` per-pixel logits, or tied to the reconstruction's
            haematoxylin through ``stain`` (needs ``image="stain"``).
        colour_weight: Weight of a penalty holding each tile's mean colour at the site's public
            mean colour. GroupNorm makes the update nearly blind to a tile's global colour, so
            without it the colour drifts; 0 turns it off (and it is off without a prior).
    """

    iterations: int = 1000
    restarts: int = 1
    time_budget: float | None = None
    tolerance: float = 0.0
    image: ImageKind = "pixels"
    init: InitKind = "uniform"
    mask_lr: float = 0.1
    fraction_weight: float = 1.0
    colour_weight: float = 0.0
    mask_model: Literal["free", "stain"] = "free"

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
        if self.init not in ("prior", "uniform"):
            problems.append(f"`init` must be 'prior' or 'uniform', but got {self.init!r}")
        if problems:
            raise ConfigError(problems)


class Attack(ABC):
    """Base of every registered reconstruction attack: settings, threat model, ``reconstruct``.

    Subclasses set ``Config`` (a frozen dataclass extending :class:`AttackConfig`) and
    implement :meth:`reconstruct`; optimisation attacks extend :class:`GradientInversion`.
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    # Who attacks: an honest-but-curious server only reads updates; a malicious one also changes the
    # model it sends (and so the training run). Results of the two are never mixed on one curve.
    threat: ClassVar[str] = "honest-but-curious server"
    Config: ClassVar[type[AttackConfig]] = AttackConfig

    def __init__(self, config: AttackConfig | None = None, **overrides: Any) -> None:
        base = config or self.Config()
        known = {f.name for f in fields(base)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown {self.name} settings {unknown}; known: {sorted(known)}")
        self.config = type(base)(**{**{f.name: getattr(base, f.name) for f in fields(base)}, **overrides})

    def __repr__(self) -> str:
        settings = ", ".join(f"{f.name}={getattr(self.config, f.name)!r}" for f in fields(self.config))
        return f"{type(self).__name__}({settings})"

    @abstractmethod
    def reconstruct(
        self,
        view: ServerView,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        progress: Progress | None = None,
        observer: Observer | None = None,
        observe_every: int = 25,
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
        """


class GradientInversion(Attack):
    """An attack that optimises candidate tiles until the simulated update matches the captured one.

    Subclasses implement :meth:`distance` (how far a simulated update is from the captured one)
    and :meth:`make_optimizer`; they may override :meth:`regulariser` and :meth:`step`.
    """

    # -- what attacks differ by ---------------------------------------------------------------

    @abstractmethod
    def distance(self, simulated: Tensor, target: Tensor) -> Tensor:
        """Scalar distance between a flat simulated update and the flat captured one."""

    @abstractmethod
    def make_optimizer(self, image: list[Tensor], mask: list[Tensor]) -> torch.optim.Optimizer:
        """The optimiser over the image variables and (when the mask is unknown) the mask logits."""

    def prepare(self, sizes: list[int]) -> None:
        """Called before optimising with the number of elements of each parameter, in flattening order."""
        self.sizes = sizes

    def regulariser(self, images: Tensor) -> Tensor:
        """Image prior added to the objective (none by default). ``images``: (N, 3, H, W)."""
        return images.new_zeros(())

    def make_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
        return None

    def step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Tensor]) -> Tensor:
        """One optimiser step; returns the objective (per restart) before the step."""
        optimizer.zero_grad(set_to_none=True)
        values = closure()
        values.sum().backward()
        optimizer.step()
        return values.detach()

    # -- the shared loop ------------------------------------------------------------------------

    def reconstruct(
        self,
        view: ServerView,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
        progress: Progress | None = None,
        observer: Observer | None = None,
        observe_every: int = 25,
    ) -> Reconstruction:
        """Invert the view's update(s): optimise candidate tiles (and masks) until simulated updates match.

        Restarts run as one batched optimisation (``vmap`` over the restart axis); the
        restart and iterate with the lowest objective are returned. With several observed rounds
        the objective is the mean over rounds of each round's distance (each round simulated from
        its own global weights and batches on the same candidates), plus the regularisers.

        Args:
            view: What the server sees.
            seed: Seed of the random start.
            device: Where to optimise.
            progress: Called every iteration with (iteration, total, best objective).
            observer: Called every ``observe_every`` iterations and after the last one with
                (iteration, best images so far (N, 3, H, W) clamped to [0, 1], their objective). It
                sees only what the attack has; a caller may score the images against ground truth
                (the attack never reads it). It does not change the attack's numbers.
            observe_every: Iterations between ``observer`` calls (>= 1).
        """
        if observe_every < 1:
            raise ValueError(f"`observe_every` must be >= 1 iteration, but got {observe_every}")
        cfg = self.config
        device = torch.device(device)
        start = time.perf_counter()
        model = _architecture(view.model).to(device)
        observed = view.observed
        weights = [{k: v.to(device) for k, v in r.global_weights.items()} for r in observed]
        names = list(weights[0])
        targets = [flatten({k: v.to(device) for k, v in r.update.items()}, names) for r in observed]
        self.prepare([weights[0][name].numel() for name in names])
        generator = torch.Generator().manual_seed(seed)
        shape = (cfg.restarts, view.n_images, view.tile_size, view.tile_size)
        init = cfg.init if view.prior is not None else "uniform"
        image_vars = init_images(cfg.image, init, shape, prior=view.prior, generator=generator)
        image_vars = ImageVariables(
            image_vars.kind, *(t.detach().to(device).requires_grad_() for t in image_vars.tensors())
        )
        masks = _MaskVariables(view, shape, device, cfg.mask_model, image_vars)
        fraction = self._fraction_target(view)

        colour = (
            None
            if view.prior is None or not cfg.colour_weight
            else mean_colours(view.prior, view.n_images).to(device)
        )

        def match(x: Tensor, m: Tensor) -> Tensor:
            distances = [
                self.distance(flatten(simulate_update(model, p, x, m, r.recipe), names), t)
                for p, r, t in zip(weights, observed, targets, strict=True)
            ]
            return distances[0] if len(distances) == 1 else torch.stack(distances).mean()

        def one_restart(x: Tensor, m: Tensor) -> Tensor:
            value = match(x, m) + self.regulariser(x)
            if colour is not None:
                value = value + cfg.colour_weight * (x.mean(dim=(-2, -1)) - colour).pow(2).sum(-1).mean()
            if fraction is not None:
                value = value + cfg.fraction_weight * (m.mean() - fraction) ** 2
            return value

        def closure() -> Tensor:
            return vmap(one_restart)(image_vars.render(), masks.render())

        optimizer = self.make_optimizer(image_vars.tensors(), masks.tensors())
        scheduler = self.make_scheduler(optimizer)
        best_value = torch.full((cfg.restarts,), math.inf)
        best_images = image_vars.render().detach().clone()
        best_masks = masks.render().detach().clone()
        history: list[tuple[int, float]] = []
        stopped, iteration = "budget", 0
        for iteration in range(1, cfg.iterations + 1):
            with torch.no_grad():
                before = (image_vars.render().clone(), masks.render().clone())
            values = self.step(optimizer, closure).cpu()  # objective of `before`, per restart
            if not torch.isfinite(values).any():
                stopped = "non-finite"
                break
            improved = torch.isfinite(values) & (values < best_value)
            if improved.any():
                best_value = torch.where(improved, values, best_value)
                best_images[improved] = before[0][improved]
                best_masks[improved] = before[1][improved]
            image_vars.project()
            if scheduler is not None:
                scheduler.step()
            current = float(best_value.min())
            if iteration % 25 == 0 or iteration == 1:
                history.append((iteration, current))
            if progress:
                progress(iteration, cfg.iterations, current)
            if observer and iteration % observe_every == 0:
                observed_best = int(torch.argmin(best_value))
                observer(iteration, best_images[observed_best].clamp(0, 1).cpu(), current)
            if cfg.time_budget is not None and time.perf_counter() - start > cfg.time_budget:
                stopped = "time"
                break
            if (
                cfg.tolerance
                and iteration % 100 == 0
                and len(history) > 4
                and abs(history[-5][1] - current) < cfg.tolerance
            ):
                stopped = "converged"
                break
        winner = int(torch.argmin(best_value))
        if observer and iteration % observe_every != 0:
            observer(iteration, best_images[winner].clamp(0, 1).cpu(), float(best_value[winner]))
        return Reconstruction(
            images=best_images[winner].clamp(0, 1).cpu(),
            masks=best_masks[winner].cpu(),
            objective=float(best_value[winner]),
            restart_objectives=best_value.tolist(),
            iterations=iteration,
            seconds=time.perf_counter() - start,
            stopped=stopped,
            history=history,
        )

    def _fraction_target(self, view: ServerView) -> float | None:
        """Foreground fraction the unknown masks are pulled towards (see :mod:`attacks.masks`)."""
        if view.masks is not None or not self.config.fraction_weight:
            return None
        from attacks.masks import estimate_foreground_fraction

        estimate = estimate_foreground_fraction(view)
        return None if estimate is None else estimate.value


class _MaskVariables:
    """The known masks, or what stands for unknown ones (R, N, 1, H, W).

    ``free``: one logit per pixel, started at the site's public foreground fraction.
    ``stain`` (with the stain image model): nuclei are where haematoxylin is, so the
    logit is ``a · (c_H − b) + residual`` with the reconstruction's haematoxylin
    concentration ``c_H``, a learnable gain ``a`` and threshold ``b`` per restart, and
    a free per-pixel residual started at 0.
    """

    def __init__(
        self,
        view: ServerView,
        shape: tuple[int, int, int, int],
        device: torch.device,
        model: str,
        image: ImageVariables,
    ) -> None:
        r, n, h, w = shape
        self.known: Tensor | None = None
        self.tie: Tensor | None = None
        self.image = image
        if view.masks is not None:
            self.known = view.masks.to(device).expand(r, n, 1, h, w)
            self.logits: Tensor | None = None
            return
        fraction = min(max(view.foreground_prior or 0.5, 0.01), 0.99)
        if model == "stain" and image.kind == "stain":
            with torch.no_grad():
                haematoxylin = torch.nn.functional.softplus(image.values[:, :, :1])
                threshold = torch.quantile(haematoxylin.reshape(r, -1), 1 - fraction, dim=1)
            gain = torch.full((r,), 10.0, device=device)
            self.tie = torch.stack([gain, threshold], dim=1).requires_grad_()
            self.logits = torch.zeros((r, n, 1, h, w), device=device).requires_grad_()
        else:
            start = math.log(fraction / (1 - fraction))
            self.logits = torch.full((r, n, 1, h, w), start, device=device).requires_grad_()

    def tensors(self) -> list[Tensor]:
        return [t for t in (self.logits, self.tie) if t is not None]

    def render(self) -> Tensor:
        if self.known is not None:
            return self.known
        if self.tie is None:
            return torch.sigmoid(self.logits)  # type: ignore[arg-type]
        haematoxylin = torch.nn.functional.softplus(self.image.values[:, :, :1])
        gain, threshold = self.tie[:, 0, None, None, None, None], self.tie[:, 1, None, None, None, None]
        return torch.sigmoid(gain * (haematoxylin - threshold) + self.logits)  # type: ignore[operator]


ATTACKS: Registry[Attack] = Registry("attack")


def _architecture(model: ModelConfig) -> nn.Module:
    from feddp_eval.models.unet import UNet

    return UNet(depth=model.depth, width=model.width, groups=model.groups, activation=model.activation)
