"""Replay a client's local training functionally, so the attacker can differentiate through it.

The curious server knows the global weights it sent and (by default) the client's
local hyper-parameters. Given candidate tiles and masks it simulates the K local
optimizer steps with :func:`torch.func.functional_call` and returns the weight
change, which the attack then matches to the captured update. With K = 1 and SGD
the simulated update is ``-lr * gradient``: the single-gradient attack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad

from feddp_eval.models.loss import segmentation_loss

Params = dict[str, Tensor]


@dataclass(frozen=True)
class LocalRecipe:
    """The client's local training as the attacker believes it happened.

    Attributes:
        batches: For each local step, the slots (indices into the candidate tiles) it used.
        lr: Local learning rate.
        optimizer: ``sgd`` or ``adam``.
        momentum: SGD momentum (the optimizer is fresh each round, as in the client).
        dice_weight: Weight of the soft Dice term of the loss.
    """

    batches: tuple[tuple[int, ...], ...]
    lr: float
    optimizer: str = "sgd"
    momentum: float = 0.0
    dice_weight: float = 1.0

    @property
    def steps(self) -> int:
        return len(self.batches)


def simulate_update(
    model: nn.Module, params: Params, images: Tensor, masks: Tensor, recipe: LocalRecipe
) -> Params:
    """Weight change ``local − global`` after the recipe's local steps on ``images``/``masks``.

    Differentiable with respect to ``images`` and ``masks`` (soft masks in [0, 1] allowed),
    and composable with :func:`torch.func.vmap` over restarts.

    Args:
        model: The architecture (its own weights are ignored).
        params: Global weights the round started from.
        images: (N, 3, H, W) candidate tiles.
        masks: (N, 1, H, W) candidate masks.
        recipe: Local steps, batch split and optimizer.
    """
    current = dict(params)
    state: dict[str, Params] = {}
    for step, slots in enumerate(recipe.batches, start=1):
        index = torch.as_tensor(slots, dtype=torch.long, device=images.device)
        x, y = images.index_select(0, index), masks.index_select(0, index)

        def loss(p: Params, x: Tensor = x, y: Tensor = y) -> Tensor:
            return segmentation_loss(functional_call(model, p, (x,)), y, dice_weight=recipe.dice_weight)

        grads = grad(loss)(current)
        current = _optimizer_step(current, grads, state, step, recipe)
    return {name: current[name] - params[name] for name in params}


def _optimizer_step(p: Params, g: Params, state: dict[str, Params], step: int, recipe: LocalRecipe) -> Params:
    """One functional step of PyTorch's SGD (momentum, no dampening) or Adam (default betas).

    Adam's square root gets 1e-30 inside so its derivative stays finite where a gradient is exactly 0.
    """
    if recipe.optimizer == "sgd":
        if recipe.momentum:
            buf = g if step == 1 else {k: recipe.momentum * state["buf"][k] + g[k] for k in g}
            state["buf"] = buf
            g = buf
        return {k: p[k] - recipe.lr * g[k] for k in p}
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    m = {k: (beta1 * state["m"][k] if step > 1 else 0) + (1 - beta1) * g[k] for k in g}
    v = {k: (beta2 * state["v"][k] if step > 1 else 0) + (1 - beta2) * g[k] ** 2 for k in g}
    state["m"], state["v"] = m, v
    c1, c2 = 1 - beta1**step, 1 - beta2**step
    return {k: p[k] - recipe.lr * (m[k] / c1) / ((v[k] / c2 + 1e-30).sqrt() + eps) for k in p}


def flatten(update: Params, names: Sequence[str]) -> Tensor:
    """Concatenate tensors in a fixed name order into one vector."""
    return torch.cat([update[name].reshape(-1) for name in names])
