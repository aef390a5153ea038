"""Canaries enter training through a wrapper around any defense's hooks.

:class:`AuditedHooks` delegates to the defense it wraps; each client side it builds is an
:class:`AuditedClient` around the defense's own :class:`ClientDefense`, which adds that client's
member canaries at the point where the defense's guarantee says one protected unit enters:

- ``gradient`` canaries (sample-level): in each local step, each member canary of the client is
  sampled with the client's sampling rate q = B / n, like a Poisson-sampled tile. Under Opacus'
  ``DPOptimizer`` its vector (norm C) joins the summed, per-sample-clipped gradient just before
  ``add_noise``, exactly where a real tile's clipped gradient sits; under a plain optimizer it joins
  the batch-mean gradient as ``vector / B`` just before ``step``.
- ``update`` canaries (client-level): each member canary's vector (norm C) joins the client's raw
  update every round it takes part, before the defense clips, noises and releases it.

What the audit tests: the noise and the accounting of the code that runs. Not the per-sample
clipping of real tiles (a canary enters already of norm C), nor the data sampler: canaries are
always Poisson-sampled at rate q, as the DP-SGD accountant assumes of every tile, so a run with
``poisson_sampling = false`` is audited as if its tiles were.

The defense's own noise draws are untouched (the canaries' sampling has its own seeded stream),
and what the server captures is the defense's release, so the audit tests the code path that runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from feddp_eval.audit.canaries import (
    GRADIENT,
    NOT_APPLICABLE,
    UPDATE,
    Canary,
    canary_level,
    draw_canaries,
    draw_membership,
    write_design,
)
from feddp_eval.federated.aggregation import Aggregator
from feddp_eval.federated.hooks import ClientDefense, ClientPlan, PrivacyRecord, TrainingHooks, Update
from feddp_eval.seeding import generator


class AuditedHooks(TrainingHooks):
    """``inner``'s hooks with ``canaries`` Dirac canaries injected (each a member with probability ½).

    The canaries and their membership derive from ``seed`` and the model alone, so an engine that
    builds the hooks again elsewhere (one process per client) plants the same ones.

    Args:
        inner: The defense (or plain hooks) that trains and releases.
        canaries: m, the number of canaries.
        seed: Experiment seed; the canaries, their membership and their sampling derive from it.
        norm: Canary L2 norm; default: the defense's clip ``C`` (1.0 without one).
        delta: δ the audit bounds ε at; default: the defense's δ (1e-5 without one).
    """

    def __init__(
        self,
        inner: TrainingHooks,
        *,
        canaries: int,
        seed: int,
        norm: float | None = None,
        delta: float | None = None,
    ) -> None:
        config = getattr(inner, "config", None)
        self.inner = inner
        vars(self)["name"] = inner.name  # shadows the base's class-level "none" (a ClassVar to mypy)
        self.count = canaries
        self.seed = seed
        self.norm = float(norm if norm is not None else getattr(config, "clip", 1.0))
        self.delta = float(delta if delta is not None else getattr(config, "delta", 1e-5))
        self.level, self.reason = canary_level(inner)
        self.canaries: list[Canary] = []
        self.members: list[bool] = []

    # ----------------------------------------------------------------- delegated as they are

    def __getattr__(self, name: str) -> Any:  # defense-specific fields (config, granularity, ...)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def poisson_sampling(self) -> bool:  # the defense's, which may be set per instance
        return bool(self.inner.poisson_sampling)

    @poisson_sampling.setter
    def poisson_sampling(self, value: bool) -> None:
        self.inner.poisson_sampling = value

    @property
    def notes(self) -> Sequence[str]:  # the defense's, filled in by its setup
        return self.inner.notes

    @notes.setter
    def notes(self, value: Sequence[str]) -> None:
        self.inner.notes = value

    def wrap(self, inner: Aggregator) -> Aggregator:
        return self.inner.wrap(inner)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()  # captures look the same with the audit on; no membership leaks

    # ----------------------------------------------------------------- where canaries enter

    def setup(self, model: nn.Module, plans: Sequence[ClientPlan]) -> None:
        self.inner.setup(model, plans)
        if self.level != NOT_APPLICABLE:
            self.canaries = draw_canaries(model, count=self.count, clients=len(plans), seed=self.seed)
            self.members = draw_membership(self.count, seed=self.seed)

    def client(self, plan: ClientPlan) -> ClientDefense:
        """The defense's client side for ``plan``, with that client's member canaries planted."""
        own = [
            c for c, m in zip(self.canaries, self.members, strict=True) if m and c.client == plan.client_id
        ]
        return AuditedClient(
            self.inner.client(plan), canaries=own, level=self.level, norm=self.norm, seed=self.seed
        )

    # ----------------------------------------------------------------- the record

    def design(self, privacy: Mapping[str, Any]) -> dict[str, Any]:
        """The audit's public record: level, canaries, norm, δ and the run's ε (``privacy``: the run's
        :func:`~feddp_eval.federated.hooks.privacy_summary`, whose ``per_client`` ε each client's
        canaries are held to)."""
        per_client = privacy.get("per_client") or []
        return {
            "version": 1,
            "level": self.level,
            "reason": self.reason,
            "canaries": len(self.canaries),
            "norm": self.norm,
            "delta": self.delta,
            "epsilon": privacy.get("epsilon"),
            "epsilon_delta": privacy.get("delta"),
            "granularity": privacy.get("granularity", "none"),
            "mechanism": privacy.get("mechanism", "none"),
            "client_epsilons": {
                str(r["client_id"]): r["epsilon"] for r in per_client if r["client_id"] is not None
            },
            "canary_list": [c.to_dict() for c in self.canaries],
        }

    def write(self, run_dir: Any, privacy: Mapping[str, Any]) -> None:
        """Write the design (public) and membership (with the ground truth) into ``run_dir``; call after
        training, with the run's privacy summary."""
        write_design(run_dir, self.design(privacy), self.members)


class AuditedClient(ClientDefense):
    """One client's defense side with its member ``canaries`` planted (see the module docstring).

    Everything but local training and the release is the inner side's, its accountant included;
    the state adds the rounds trained, which key the canaries' per-round sampling.
    """

    def __init__(
        self, inner: ClientDefense, *, canaries: list[Canary], level: str, norm: float, seed: int
    ) -> None:
        super().__init__(inner.plan)
        self.inner = inner
        self.poisson_sampling = inner.poisson_sampling
        self.canaries, self.level, self.norm, self.seed = canaries, level, norm, seed
        self.rounds = 0

    @contextmanager
    def local_training(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator
    ) -> Iterator[tuple[nn.Module, torch.optim.Optimizer]]:
        self.rounds += 1
        params = dict(model.named_parameters())  # the names the captured update uses
        own = [c for c in self.canaries if c.parameter in params]
        with self.inner.local_training(model, optimizer, generator) as (local_model, local_opt):
            if self.level != GRADIENT or not own:
                yield local_model, local_opt
                return
            inject = self._step_injector(own, params)
            if hasattr(local_opt, "add_noise") and hasattr(local_opt, "original_optimizer"):
                undo = _before(local_opt, "add_noise", lambda: inject("summed_grad", self.norm))
            else:
                batch = max(1, min(self.plan.batch_size, self.plan.n_samples))
                undo = _before(local_opt, "step", lambda: inject("grad", self.norm / batch))
            try:
                yield local_model, local_opt
            finally:
                undo()

    def _step_injector(
        self, own: list[Canary], params: dict[str, nn.Parameter]
    ) -> Callable[[str, float], None]:
        """A function adding this step's Poisson-sampled member canaries to each parameter's ``field``."""
        rate = min(1.0, self.plan.batch_size / self.plan.n_samples)
        sampling = generator(self.seed, "audit", "sampling", self.plan.client_id, self.rounds)
        placed = _placement(own, params)

        @torch.no_grad()
        def inject(field: str, value: float) -> None:
            drawn = torch.rand(len(own), generator=sampling) < rate
            for name, (which, position, signs) in placed.items():
                chosen = drawn[which]
                if bool(chosen.any()):
                    chosen = chosen.to(signs.device)
                    at = tuple(index[chosen] for index in position)
                    _field(params[name], field).index_put_(at, signs[chosen] * value, accumulate=True)

        return inject

    def empty_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.inner.empty_step(model, optimizer)

    def release(self, update: Update, generator: torch.Generator) -> Update:
        own = [c for c in self.canaries if c.parameter in update]
        if self.level == UPDATE and own:
            update = {name: t.clone() for name, t in update.items()}
            for canary in own:
                update[canary.parameter].view(-1)[canary.index] += canary.sign * self.norm
        return self.inner.release(update, generator)

    def privacy_record(self) -> PrivacyRecord | None:
        return self.inner.privacy_record()

    def state_dict(self) -> dict[str, Any]:
        return {"audit_rounds": self.rounds, "inner": self.inner.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.rounds = int(state["audit_rounds"])
        self.inner.load_state_dict(state["inner"])


Placement = dict[str, tuple[Tensor, tuple[Tensor, ...], Tensor]]


def _placement(own: list[Canary], params: dict[str, nn.Parameter]) -> Placement:
    """Per parameter: which of ``own`` sit in it, their coordinates (one index tensor per dimension,
    on the parameter's device; Opacus' summed_grad may be non-contiguous, so no flat view) and signs."""
    placed: Placement = {}
    for name, param in params.items():
        which = [i for i, c in enumerate(own) if c.parameter == name]
        if which:
            flat = torch.tensor([own[i].index for i in which], device=param.device)
            position = tuple(torch.unravel_index(flat, param.shape))
            signs = torch.tensor([float(own[i].sign) for i in which], dtype=param.dtype, device=param.device)
            placed[name] = (torch.tensor(which), position, signs)
    return placed


def _field(param: nn.Parameter, field: str) -> Tensor:
    """``param.grad`` or ``param.summed_grad``; zeros when the loss did not reach ``param`` this step."""
    tensor: Tensor | None = getattr(param, field, None)
    if tensor is None:
        tensor = torch.zeros_like(param)
        setattr(param, field, tensor)
    return tensor


def _before(obj: Any, method: str, action: Callable[[], None]) -> Callable[[], None]:
    """Make ``obj.method`` run ``action()`` first (on this instance only); returns the undo."""
    original = getattr(obj, method)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        action()
        return original(*args, **kwargs)

    setattr(obj, method, wrapped)
    return lambda: delattr(obj, method)
