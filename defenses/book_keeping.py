"""Book-keeping DP-SGD: per-sample gradient norms without a second backward (``grad_sample_mode = "bk"``).

Bu, Wang, Zha, Karypis, "Differentially private optimization on large model at
small cost" (ICML 2023). One forward and one backward of the batch loss run with
the trainable parameters switched off, so autograd computes only the gradients
of the activations (no weight gradient is thrown away). A tensor hook on every
trainable layer's output records, from the layer's input ``a`` and output
gradient ``g`` of each sample, what clipping needs:

* Conv2d / Linear weights: either the per-sample gradients themselves (one
  grouped convolution / batched product, cheap when the layer has few weights)
  or only their norms by the ghost-norm identity
  ‖G_i‖² = Σ_{s,t} (a_is·a_it)(g_is·g_it) over output positions, kept with
  ``a`` and ``g`` for one clip-weighted weight gradient later. Bu et al.'s rule
  picks per layer: ghost when 2T² < p·d (T output positions, p·d weights).
* biases and GroupNorm's affine parameters: their per-sample gradients in
  closed form (sums over positions of ``g`` and of ``g·x̂``).

:class:`BookKeepingDPOptimizer` is Opacus' ``DPOptimizer`` with only the
clipping replaced: the clip factors c_i = min(1, C/(‖g_i‖ + 1e-6)) and the sum
Σ_i c_i g_i per parameter come from those records; the noise (same generator,
same draws, same order), the ``mean`` scaling, the skip logic and the step hook
(accountant) are Opacus' own. A layer type with trainable parameters that is not
supported raises ``ValueError`` when the model is wrapped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from opacus.optimizers import DPOptimizer
from torch import Tensor, nn
from torch.nn.grad import conv2d_weight

GhostRule = Literal["auto", "always", "never"]


@dataclass
class PerSample:
    """One parameter's per-sample gradients from one backward pass, in the form that was cheaper.

    Either ``samples`` (materialised) or both ghost fields are set. Records hold the gradients of
    the loss as the backward saw it: :class:`BookKeepingDPOptimizer` applies the ``mean`` scaling.

    Attributes:
        samples: The (B, *shape) per-sample gradients, when materialised.
        ghost_sq_norms: (B,) squared per-sample gradient norms, when only those were computed.
        ghost_sum: Σ_i c_i g_i for clip factors ``c`` of shape (B,), with ``ghost_sq_norms``.
    """

    samples: Tensor | None = None
    ghost_sq_norms: Tensor | None = None
    ghost_sum: Callable[[Tensor], Tensor] | None = None

    @property
    def sq_norms(self) -> Tensor:
        """(B,) squared norm of each sample's gradient."""
        if self.samples is not None:
            return self.samples.flatten(1).pow(2).sum(1)
        return cast(Tensor, self.ghost_sq_norms)

    def weighted_sum(self, factors: Tensor) -> Tensor:
        """Σ_i c_i g_i for clip factors ``c`` of shape (B,)."""
        if self.samples is not None:
            return torch.einsum("i,i...", factors.to(self.samples.dtype), self.samples)
        return cast(Callable[[Tensor], Tensor], self.ghost_sum)(factors)


def materialised(samples: Tensor) -> PerSample:
    """Record of explicit per-sample gradients (B, *shape)."""
    return PerSample(samples=samples)


def merge(first: PerSample, second: PerSample) -> PerSample:
    """The record of a layer applied twice in one forward: the per-sample gradients add up."""
    if first.samples is None or second.samples is None:
        raise ValueError("bk: a layer used twice in one forward needs materialised per-sample gradients")
    return materialised(first.samples + second.samples)


def use_ghost(positions: int, weights: int, rule: GhostRule) -> bool:
    """Bu et al.'s choice: ghost norms cost ~2T² per sample, materialising ~p·d (T positions, p·d weights)."""
    return rule == "always" or (rule == "auto" and 2 * positions**2 < weights)


def _ghost_sq_norms(a: Tensor, g: Tensor) -> Tensor:
    """Σ_{s,t} (a_s·a_t)(g_s·g_t) per sample for a (B, T, d) and g (B, T, p)."""
    return (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g, g.transpose(1, 2))).sum((1, 2))


# --------------------------------------------------------------------------- per-layer rules
# Each takes (layer, a = input, g = per-sample output gradient, rule) and returns {parameter name: record}.


def conv2d_records(layer: nn.Conv2d, a: Tensor, g: Tensor, rule: GhostRule) -> dict[str, PerSample]:
    """Conv2d weight (grouped-convolution per-sample gradients or ghost norms) and bias."""
    if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
        raise ValueError(
            f"bk: Conv2d padding {layer.padding!r}, mode {layer.padding_mode!r} is not supported"
        )
    records = {}
    if layer.bias is not None and layer.bias.requires_grad:
        records["bias"] = materialised(g.sum((2, 3)))
    if not layer.weight.requires_grad:
        return records
    shape = layer.weight.shape
    positions = g.shape[2] * g.shape[3]
    conv = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation}
    if use_ghost(positions, shape.numel(), rule):
        records["weight"] = _conv_ghost(layer, a, g, conv)
    elif layer.groups == 1:
        n = a.shape[0]
        samples = conv2d_weight(
            a.reshape(1, -1, *a.shape[2:]),
            (n * shape[0], *shape[1:]),
            g.reshape(1, -1, *g.shape[2:]),
            groups=n,
            **conv,
        )
        records["weight"] = materialised(samples.view(n, *shape))
    else:
        records["weight"] = materialised(_conv_unfold_samples(layer, a, g, conv))
    return records


def _conv_unfold_samples(layer: nn.Conv2d, a: Tensor, g: Tensor, conv: dict[str, Any]) -> Tensor:
    """Per-sample Conv2d weight gradients through unfold and a batched product (any ``groups``)."""
    n, k = a.shape[0], layer.groups
    cols = F.unfold(a, layer.kernel_size, **conv).view(n, k, -1, g.shape[2] * g.shape[3])
    out = g.reshape(n, k, -1, g.shape[2] * g.shape[3])
    return torch.einsum("nkps,nkds->nkpd", out, cols).reshape(n, *layer.weight.shape)


def _conv_ghost(layer: nn.Conv2d, a: Tensor, g: Tensor, conv: dict[str, Any]) -> PerSample:
    """Ghost norms of the Conv2d weight, and its clip-weighted gradient as one weight gradient."""
    if layer.groups != 1:
        raise ValueError("bk: ghost norms of a grouped Conv2d are not supported (use ghost='never')")
    cols = F.unfold(a, layer.kernel_size, **conv).transpose(1, 2)
    sq_norms = _ghost_sq_norms(cols, g.flatten(2).transpose(1, 2))

    def weighted_sum(c: Tensor) -> Tensor:
        scaled = g * c.to(g.dtype).view(-1, 1, 1, 1)
        return conv2d_weight(a, layer.weight.shape, scaled, **conv)

    return PerSample(ghost_sq_norms=sq_norms, ghost_sum=weighted_sum)


def linear_records(layer: nn.Linear, a: Tensor, g: Tensor, rule: GhostRule) -> dict[str, PerSample]:
    """Linear weight (per-sample outer products or ghost norms) and bias, inputs (B, ..., d)."""
    n = a.shape[0]
    a3, g3 = a.reshape(n, -1, a.shape[-1]), g.reshape(n, -1, g.shape[-1])
    records = {}
    if layer.bias is not None and layer.bias.requires_grad:
        records["bias"] = materialised(g3.sum(1))
    if not layer.weight.requires_grad:
        return records
    if use_ghost(a3.shape[1], layer.weight.numel(), rule):

        def weighted_sum(c: Tensor) -> Tensor:
            return torch.einsum("n,nsp,nsd->pd", c.to(g3.dtype), g3, a3)

        records["weight"] = PerSample(ghost_sq_norms=_ghost_sq_norms(a3, g3), ghost_sum=weighted_sum)
    else:
        records["weight"] = materialised(torch.einsum("nsp,nsd->npd", g3, a3))
    return records


def group_norm_records(layer: nn.GroupNorm, a: Tensor, g: Tensor, rule: GhostRule) -> dict[str, PerSample]:
    """GroupNorm affine parameters: Σ over positions of g·x̂ (weight) and of g (bias), per channel.

    x̂ is recomputed by ``F.group_norm`` without affine (one fused pass; measured faster on CPU than
    rstd·(Σ g·x − μ·Σ g) with ``torch.var_mean``).
    """
    dims = tuple(range(2, g.dim()))
    records = {}
    if layer.weight is not None and layer.weight.requires_grad:
        normalised = F.group_norm(a, layer.num_groups, eps=layer.eps)
        records["weight"] = materialised((g * normalised).sum(dims))
    if layer.bias is not None and layer.bias.requires_grad:
        records["bias"] = materialised(g.sum(dims))
    return records


Rule = Callable[[Any, Tensor, Tensor, GhostRule], dict[str, PerSample]]
RULES: dict[type[nn.Module], Rule] = {
    nn.Conv2d: conv2d_records,
    nn.Linear: linear_records,
    nn.GroupNorm: group_norm_records,
}


# --------------------------------------------------------------------------- the wrapped model

Pass = dict[nn.Parameter, PerSample]


class BookKeepingModule(nn.Module):
    """``module`` with hooks recording, per backward pass, each trainable parameter's :class:`PerSample`.

    Args:
        module: The model; every submodule owning a trainable parameter must be a Conv2d, Linear
            or GroupNorm (exact type), else ``ValueError``.
        loss_reduction: ``mean`` (the loss is the batch mean of per-sample losses, so each
            sample's output gradient arrives divided by the batch size, which
            :class:`BookKeepingDPOptimizer` multiplies back on the (B,) norms and clip factors)
            or ``sum``.
        ghost: ``auto`` (Bu et al.'s per-layer rule), ``always`` or ``never`` (materialise).
        rules: The per-layer-type record functions; default :data:`RULES`.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        loss_reduction: Literal["mean", "sum"] = "mean",
        ghost: GhostRule = "auto",
        rules: Mapping[type[nn.Module], Rule] | None = None,
    ) -> None:
        super().__init__()
        self._module = module
        self.loss_reduction, self.ghost = loss_reduction, ghost
        self.rules = dict(RULES if rules is None else rules)
        self.trainable = [p for p in module.parameters() if p.requires_grad]
        self.passes: list[Pass] = []
        self._handles = []
        for name, layer in module.named_modules():
            own = [p for p in layer.parameters(recurse=False) if p.requires_grad]
            if not own:
                continue
            if type(layer) not in self.rules:
                raise ValueError(
                    f"bk grad_sample_mode does not support layer {name!r} ({type(layer).__name__}) "
                    f"with trainable parameters; supported: {', '.join(t.__name__ for t in self.rules)}"
                )
            self._handles.append(layer.register_forward_hook(self._capture))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():
            return self._module(*args, **kwargs)
        self.passes.append({})
        # The graph is built with the parameters switched off: the backward computes activation
        # gradients only, and the weight gradients are made once, clipped, from the records.
        args = tuple(_needs_grad(x) for x in args)
        with _frozen(self.trainable):
            return self._module(*args, **kwargs)

    def _capture(self, layer: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        if not (self.passes and isinstance(output, Tensor) and output.requires_grad):
            return
        record, a = self.passes[-1], inputs[0].detach()

        def hook(g: Tensor) -> None:
            for name, per_sample in self.rules[type(layer)](layer, a, g.detach(), self.ghost).items():
                p = getattr(layer, name)
                record[p] = merge(record[p], per_sample) if p in record else per_sample

        output.register_hook(hook)

    def take(self) -> list[Pass]:
        """The records of the backward passes since the last call (forwards without a backward dropped)."""
        passes, self.passes = [p for p in self.passes if p], []
        return passes

    def empty_batch(self) -> None:
        """Record a backward pass over no sample (Poisson sampling drew nobody)."""
        self.passes.append({p: materialised(p.new_zeros((0, *p.shape))) for p in self.trainable})

    def _close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self.passes = [], []


def _needs_grad(x: Any) -> Any:
    """A floating-point input as a leaf that requires grad (so the first layer's output gradient exists)."""
    if isinstance(x, Tensor) and x.is_floating_point() and not x.requires_grad:
        return x.detach().requires_grad_(True)
    return x


@contextmanager
def _frozen(params: list[nn.Parameter]) -> Iterator[None]:
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


# --------------------------------------------------------------------------- the optimizer


class BookKeepingDPOptimizer(DPOptimizer):
    """Opacus' ``DPOptimizer`` whose per-sample clipping reads a :class:`BookKeepingModule`'s records.

    Args:
        optimizer: The wrapped optimizer.
        module: The wrapped model whose backward passes fill the records.
        **kwargs: ``DPOptimizer``'s arguments (noise_multiplier, max_grad_norm,
            expected_batch_size, loss_reduction, generator, ...).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, module: BookKeepingModule, **kwargs: Any) -> None:
        super().__init__(optimizer, **kwargs)
        self.module = module
        self._iterations = 1

    @property
    def accumulated_iterations(self) -> int:
        return self._iterations

    def clip_and_accumulate(self) -> None:
        """Σ_i c_i g_i into ``p.summed_grad``, with c_i = min(1, C / (‖g_i‖ + 1e-6)) as Opacus clips."""
        passes = self.module.take()
        if not passes:
            raise ValueError("bk: no per-sample gradients recorded; was backward() called since zero_grad()?")
        self._iterations = len(passes)
        for record in passes:
            missing = [i for i, p in enumerate(self.params) if p not in record]
            if missing:
                raise ValueError(f"bk: parameters {missing} got no gradient in backward (unused in forward?)")
            for p, grad in zip(self.params, self._clipped_sums(record), strict=True):
                grad = grad.to(p.dtype)
                p.summed_grad = grad if p.summed_grad is None else p.summed_grad + grad  # type: ignore[attr-defined]

    def _clipped_sums(self, record: Pass) -> list[Tensor]:
        """Each parameter's Σ_i c_i g_i for one pass; all materialised records as one (B, P) matrix."""
        records = [record[p] for p in self.params]
        dense = [r.samples.flatten(1) for r in records if r.samples is not None]
        flat = torch.cat(dense, dim=1) if dense else None
        ghosts = [r.sq_norms.sqrt() for r in records if r.samples is None]
        # Per-parameter norms, then their norm, as Opacus computes them: heavy clipping sums nearly
        # unit-length directions that partly cancel, and another summation order shows at 1e-6.
        norms = torch.stack([d.norm(2, dim=1) for d in dense] + ghosts, dim=1).norm(2, dim=1)
        # A mean loss divided each sample's output gradient by the batch size: undone on (B,) vectors.
        scale = len(norms) if self.module.loss_reduction == "mean" else 1
        norms = scale * norms
        factors = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0) * scale
        dense_sums = iter(
            [] if flat is None else (factors.to(flat.dtype) @ flat).split([d.shape[1] for d in dense])
        )
        return [
            next(dense_sums).view_as(p) if r.samples is not None else r.weighted_sum(factors)
            for p, r in zip(self.params, records, strict=True)
        ]

    def pre_step(self, closure: Callable[[], float] | None = None) -> bool:
        """``DPOptimizer.pre_step`` without its check for ``p.grad_sample`` (bk never makes one)."""
        if not self.params:
            return True
        self.clip_and_accumulate()
        if self._check_skip_next_step():
            self._is_last_step_skipped = True
            return False
        self.add_noise()
        self.scale_grad()
        if self.step_hook:
            self.step_hook(self)
        self._is_last_step_skipped = False
        return True

    def zero_grad(self, set_to_none: bool = False) -> None:
        self.module.take()
        super().zero_grad(set_to_none)
