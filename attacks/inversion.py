"""Gradient inversion: optimise candidate tiles until the simulated update matches the captured one.

A :class:`GradientInversion` differs from another only by its objective, its regularisers, its
optimiser and what it optimises (image, or image + mask). Restarts, projection to the pixel box,
the non-finite stop, keeping the best iterate, the time budget and progress live once, in
:meth:`GradientInversion.reconstruct`.
"""

from __future__ import annotations

import copy
import math
import time
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn
from torch.func import vmap

from attacks.base import Attack, RunOptions
from attacks.images import ImageVariables, init_images, mean_colours
from attacks.mask_variables import MaskVariables
from attacks.masks import estimate_foreground_fraction
from attacks.refine import lbfgs_refine
from attacks.simulate import Params, flatten, simulate_update
from attacks.threat_model import ObservedRound, Observer, Progress, Reconstruction, ServerView
from feddp_eval.models.unet import UNet


@dataclass
class _Problem:
    """One inversion set up on its device: the model, the rounds to match, the variables."""

    model: nn.Module
    names: list[str]
    observed: tuple[ObservedRound, ...]
    weights: list[Params]
    targets: list[Tensor]
    images: ImageVariables
    masks: MaskVariables
    fraction: float | None
    colour: Tensor | None


@dataclass
class _Best:
    """Per restart: the lowest objective seen and the iterate that reached it.

    ``images``: (R, N, 3, H, W); ``masks``: (R, N, 1, H, W); ``value``: (R,).
    """

    images: Tensor
    masks: Tensor
    value: Tensor
    history: list[tuple[int, float]] = field(default_factory=list)

    def keep(self, values: Tensor, images: Tensor, masks: Tensor, running: Tensor | None = None) -> None:
        """Keep the iterate ``(images, masks)`` of each restart whose objective ``values`` improved.

        ``running``: the restarts the rows of ``values`` are (all of them when ``None``), once
        successive halving has stopped some."""
        if running is None:
            running = torch.arange(len(values))
        improved = torch.isfinite(values) & (values < self.value[running])
        if improved.any():
            which = running[improved]
            self.value[which] = values[improved]
            self.images[which] = images[improved]
            self.masks[which] = masks[improved]

    @property
    def winner(self) -> int:
        return int(torch.argmin(self.value))


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

    def regulariser(self, images: Tensor, *, refining: bool = False) -> Tensor:
        """Image prior added to the objective (none by default). ``images``: (N, 3, H, W);
        ``refining``: whether the L-BFGS refinement (:mod:`attacks.refine`) asks."""
        return images.new_zeros(())

    def make_scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
        return None

    def halving_rungs(self) -> tuple[int, ...]:
        """Iterations after which only the better half of the running restarts goes on (successive
        halving); none by default. Needs an optimiser whose state is per variable (Adam, not L-BFGS)."""
        return ()

    def step(self, optimizer: torch.optim.Optimizer, closure: Callable[[], Tensor]) -> Tensor:
        """One optimiser step; returns the objective (per restart) before the step."""
        optimizer.zero_grad(set_to_none=True)
        values = closure()
        values.sum().backward()
        optimizer.step()
        return values.detach()

    # -- the shared loop ------------------------------------------------------------------------

    def run(self, view: ServerView, options: RunOptions) -> Reconstruction:
        """Invert the view's update(s): optimise candidate tiles (and masks) until simulated updates match.

        Restarts run as one batched optimisation (``vmap`` over the restart axis); the
        restart and iterate with the lowest objective are returned. With several observed rounds
        the objective is the mean over rounds of each round's distance (each round simulated from
        its own global weights and batches on the same candidates), plus the regularisers. The
        observer sees only what the attack has (best images so far, clamped to [0, 1], and their
        objective) and does not change the attack's numbers.
        """
        seed, device, progress = options.seed, options.device, options.progress
        observer, observe_every = options.observer, options.observe_every
        start = time.perf_counter()
        problem = self._problem(view, seed=seed, device=device, start=options.start)
        best, iteration, stopped = self._optimise(
            problem, start=start, progress=progress, observer=observer, observe_every=observe_every
        )
        if self.config.refine and stopped in ("budget", "converged", "plateau"):
            iteration, stopped = self._refine(problem, best, iteration, start=start, progress=progress)
        winner = best.winner
        if observer and iteration % observe_every != 0:
            observer(iteration, best.images[winner].clamp(0, 1).cpu(), float(best.value[winner]))
        return Reconstruction(
            images=best.images[winner].clamp(0, 1).cpu(),
            masks=best.masks[winner].cpu(),
            objective=float(best.value[winner]),
            restart_objectives=best.value.tolist(),
            iterations=iteration,
            seconds=time.perf_counter() - start,
            stopped=stopped,
            history=best.history,
        )

    def objective_at(self, view: ServerView, images: Tensor, *, refining: bool = False) -> float:
        """The attack's objective at ``images`` (N, 3, H, W) in [0, 1], with the view's masks (or the
        unknown masks' start): a basin benchmark's yardstick (the value at the truth). With the stain
        image model, ``images`` are first fitted by it, so the value is at their stain fit."""
        problem = self._problem(view, seed=0, device=torch.device("cpu"), start=images)
        one_restart = self._objective(problem, refining=refining)
        with torch.no_grad():
            x, m = problem.images.render()[0], problem.masks.render()[0]
            return float(one_restart(x, m))

    def _problem(
        self, view: ServerView, *, seed: int, device: torch.device, start: Tensor | None = None
    ) -> _Problem:
        """The model, the captured rounds and the starting variables, on ``device``."""
        cfg = self.config
        observed = view.observed
        weights = [{k: v.to(device) for k, v in r.global_weights.items()} for r in observed]
        names = list(weights[0])
        targets = [flatten({k: v.to(device) for k, v in r.update.items()}, names) for r in observed]
        self.prepare([weights[0][name].numel() for name in names])
        generator = torch.Generator().manual_seed(seed)
        shape = (cfg.restarts, view.n_images, view.tile_size, view.tile_size)
        if start is not None:  # a caller's start (basin benchmarks), exactly
            images = init_images(cfg.image, "prior", shape, prior=start, generator=generator, noise=0.0)
        else:
            init = cfg.init if view.prior is not None else "uniform"
            images = init_images(cfg.image, init, shape, prior=view.prior, generator=generator)
        images = ImageVariables(
            images.kind, *(t.detach().to(device).requires_grad_() for t in images.tensors())
        )
        return _Problem(
            model=UNet.from_config(view.model).to(device),
            names=names,
            observed=observed,
            weights=weights,
            targets=targets,
            images=images,
            masks=MaskVariables(view, shape, device, cfg.mask_model, images),
            fraction=self._fraction_target(view),
            colour=(
                None
                if view.prior is None or not cfg.colour_weight
                else mean_colours(view.prior, view.n_images).to(device)
            ),
        )

    def _objective(self, problem: _Problem, *, refining: bool = False) -> Callable[[Tensor, Tensor], Tensor]:
        """The objective of one restart, ``(images (N, 3, H, W), masks (N, 1, H, W)) -> scalar``."""
        cfg, p = self.config, problem

        def match(x: Tensor, m: Tensor) -> Tensor:
            distances = [
                self.distance(flatten(simulate_update(p.model, w, x, m, r.recipe), p.names), t)
                for w, r, t in zip(p.weights, p.observed, p.targets, strict=True)
            ]
            return distances[0] if len(distances) == 1 else torch.stack(distances).mean()

        def one_restart(x: Tensor, m: Tensor) -> Tensor:
            value = match(x, m) + self.regulariser(x, refining=refining)
            if p.colour is not None:
                value = value + cfg.colour_weight * (x.mean(dim=(-2, -1)) - p.colour).pow(2).sum(-1).mean()
            if p.fraction is not None:
                value = value + cfg.fraction_weight * (m.mean() - p.fraction) ** 2
            return value

        return one_restart

    def _closure(self, problem: _Problem) -> Callable[[], Tensor]:
        """The objective of every restart at the current variables, (R,)."""
        one_restart, p = self._objective(problem), problem

        def closure() -> Tensor:
            return vmap(one_restart)(p.images.render(), p.masks.render())

        return closure

    def _optimise(
        self,
        problem: _Problem,
        *,
        start: float,
        progress: Progress | None,
        observer: Observer | None,
        observe_every: int,
    ) -> tuple[_Best, int, str]:
        """Run the iterations; returns the best iterates, the last iteration and why it stopped."""
        cfg, images, masks = self.config, problem.images, problem.masks
        closure = self._closure(problem)
        optimizer = self.make_optimizer(images.tensors(), masks.tensors())
        scheduler = self.make_scheduler(optimizer)
        best = _Best(
            images.render().detach().clone(),
            masks.render().detach().clone(),
            torch.full((cfg.restarts,), math.inf),
        )
        stopped, iteration = "budget", 0
        running, rungs = torch.arange(cfg.restarts), set(self.halving_rungs())
        for iteration in range(1, cfg.iterations + 1):
            with torch.no_grad():
                before = (images.render().clone(), masks.render().clone())
            values = self.step(optimizer, closure).cpu()  # objective of `before`, per restart
            if not torch.isfinite(values).any():
                stopped = "non-finite"
                break
            best.keep(values, *before, running)
            images.project()
            if iteration in rungs:
                running = _halve(problem, optimizer, best, running)
            if scheduler is not None:
                scheduler.step()
            current = float(best.value.min())
            if iteration % 25 == 0 or iteration == 1:
                best.history.append((iteration, current))
            if progress:
                progress(iteration, cfg.iterations, current)
            if observer and iteration % observe_every == 0:
                observer(iteration, best.images[best.winner].clamp(0, 1).cpu(), current)
            if (reason := self._stop(iteration, best.history, current, start)) is not None:
                stopped = reason
                break
        return best, iteration, stopped

    def _refine(
        self, problem: _Problem, best: _Best, iteration: int, *, start: float, progress: Progress | None
    ) -> tuple[int, str]:
        """L-BFGS from the winning restart's best iterate (:func:`attacks.refine.lbfgs_refine`), in
        float64 when asked; the winner's best iterate is replaced when the refinement lowers its
        objective. Returns the iterations run in all and why the refinement stopped."""
        cfg = self.config
        dtype = torch.float64 if cfg.refine_float64 else torch.float32
        p = problem
        converted = replace(
            p,
            model=copy.deepcopy(p.model).to(dtype),
            weights=[{k: v.to(dtype) for k, v in w.items()} for w in p.weights],
            targets=[t.to(dtype) for t in p.targets],
            colour=None if p.colour is None else p.colour.to(dtype),
        )
        winner = best.winner
        total = cfg.iterations + cfg.refine

        def on_chunk(done: int, value: float) -> None:
            best.history.append((iteration + done, value))
            if progress:
                progress(iteration + done, total, min(value, float(best.value.min())))

        deadline = None if cfg.time_budget is None else start + cfg.time_budget
        images, masks, value, done, stopped = lbfgs_refine(
            self._objective(converted, refining=True),
            best.images[winner].to(dtype),
            best.masks[winner].to(dtype),
            mask_free=p.masks.known is None,
            iterations=cfg.refine,
            deadline=deadline,
            on_chunk=on_chunk,
        )
        # Compared in the refinement's own objective (its regulariser may be annealed): the start
        # is its first evaluation, so the refinement never returns worse than the first phase.
        best.images[winner] = images.to(best.images.dtype)
        best.masks[winner] = masks.to(best.masks.dtype)
        best.value[winner] = value
        return iteration + done, stopped

    def _stop(
        self, iteration: int, history: list[tuple[int, float]], current: float, start: float
    ) -> str | None:
        """``time`` past the time budget, ``converged`` when flat over the last 100 iterations, ``plateau``
        when the best objective fell by less than ``plateau`` of itself over them (see
        :class:`~attacks.base.AttackConfig`), else None. ``history`` holds the best objective at
        iteration 1 and every 25th, so ``history[-5]`` is 100 iterations back at a multiple of 25."""
        cfg = self.config
        if cfg.time_budget is not None and time.perf_counter() - start > cfg.time_budget:
            return "time"
        checked = iteration % 25 == 0 and 3 * cfg.iterations <= 8 * iteration < 8 * cfg.iterations
        if cfg.plateau and checked and len(history) > 4:  # at the budget itself it stopped for the budget
            before = history[-5][1]
            if math.isfinite(before) and before - current <= cfg.plateau * abs(before):
                return "plateau"
        if (
            cfg.tolerance
            and iteration % 100 == 0
            and len(history) > 4
            and abs(history[-5][1] - current) < cfg.tolerance
        ):
            return "converged"
        return None

    def _fraction_target(self, view: ServerView) -> float | None:
        """Foreground fraction the unknown masks are pulled towards (see :mod:`attacks.masks`)."""
        if view.masks is not None or not self.config.fraction_weight:
            return None
        estimate = estimate_foreground_fraction(view)
        return None if estimate is None else estimate.value


def _halve(problem: _Problem, optimizer: torch.optim.Optimizer, best: _Best, running: Tensor) -> Tensor:
    """Successive halving: keep the better half of the ``running`` restarts (by each one's best
    objective so far), in their order; their variables and optimiser state carry on unchanged, the
    others stop (their best iterates stay in ``best``). Returns the restarts still running."""
    keep = torch.sort(torch.argsort(best.value[running], stable=True)[: (len(running) + 1) // 2]).values
    images, masks = problem.images, problem.masks
    replaced: dict[int, Tensor] = {}

    def cut(t: Tensor | None) -> Tensor | None:
        if t is None:
            return None
        new = t.detach()[keep].clone().requires_grad_()
        replaced[id(t)] = new
        return new

    images.values = cut(images.values)  # type: ignore[assignment]
    images.stain = cut(images.stain)
    masks.logits = cut(masks.logits)
    masks.tie = cut(masks.tie)
    if masks.known is not None:
        masks.known = masks.known[keep]
    for group in optimizer.param_groups:
        for i, old in enumerate(group["params"]):
            new = replaced[id(old)]
            state = optimizer.state.pop(old, {})
            optimizer.state[new] = {
                k: v[keep] if isinstance(v, Tensor) and v.ndim and v.shape[0] == len(running) else v
                for k, v in state.items()
            }
            group["params"][i] = new
    return running[keep]
