"""Canaries enter training through a wrapper around any defense's hooks.

:class:`AuditedHooks` delegates every hook to the defense it wraps and adds member canaries at
the point where the defense's guarantee says one protected unit enters:

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

from collections.abc import Callable, Iterator, Sequence
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
from feddp_eval.federated.hooks import ClientPlan, PrivacyRecord, TrainingHooks, Update, privacy_summary
from feddp_eval.seeding import generator


class AuditedHooks(TrainingHooks):
    """``inner``'s hooks with ``canaries`` Dirac canaries injected (each a member with probability ½).

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
        self._plans: dict[int, ClientPlan] = {}
        self._rounds: dict[int, int] = {}

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

    def empty_step(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.inner.empty_step(model, optimizer)

    def aggregate(
        self, updates: Sequence[Update], weights: Sequence[float], generator: torch.Generator
    ) -> Update:
        return self.inner.aggregate(updates, weights, generator)

    def privacy_records(self) -> list[PrivacyRecord]:
        return self.inner.privacy_records()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()  # captures look the same with the audit on; no membership leaks

    # ----------------------------------------------------------------- where canaries enter

    def setup(self, model: nn.Module, plans: Sequence[ClientPlan]) -> None:
        self.inner.setup(model, plans)
        self._plans = {p.client_id: p for p in plans}
        self._rounds = {p.client_id: 0 for p in plans}
        if self.level != NOT_APPLICABLE:
            self.canaries = draw_canaries(model, count=self.count, clients=len(plans), seed=self.seed)
            self.members = draw_membership(self.count, seed=self.seed)

    def _member_canaries(self, client_id: int) -> list[Canary]:
        return [c for c, m in zip(self.canaries, self.members, strict=True) if m and c.client == client_id]

    @contextmanager
    def local_training(
        self, client_id: int, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator
    ) -> Iterator[tuple[nn.Module, torch.optim.Optimizer]]:
        self._rounds[client_id] = self._rounds.get(client_id, 0) + 1
        params = dict(model.named_parameters())  # the names the captured update uses
        own = [c for c in self._member_canaries(client_id) if c.parameter in params]
        with self.inner.local_training(client_id, model, optimizer, generator) as (local_model, local_opt):
            if self.level != GRADIENT or not own:
                yield local_model, local_opt
                return
            inject = self._step_injector(client_id, own, params)
            if hasattr(local_opt, "add_noise") and hasattr(local_opt, "original_optimizer"):
                undo = _before(local_opt, "add_noise", lambda: inject("summed_grad", self.norm))
            else:
                plan = self._plans[client_id]
                batch = max(1, min(plan.batch_size, plan.n_samples))
                undo = _before(local_opt, "step", lambda: inject("grad", self.norm / batch))
            try:
                yield local_model, local_opt
            finally:
                undo()

    def _step_injector(
        self, client_id: int, own: list[Canary], params: dict[str, nn.Parameter]
    ) -> Callable[[str, float], None]:
        """A function adding this step's Poisson-sampled member canaries to each parameter's ``field``."""
        plan = self._plans[client_id]
        rate = min(1.0, plan.batch_size / plan.n_samples)
        sampling = generator(self.seed, "audit", "sampling", client_id, self._rounds[client_id])

        @torch.no_grad()
        def inject(field: str, value: float) -> None:
            drawn = (torch.rand(len(own), generator=sampling) < rate).tolist()
            for canary, included in zip(own, drawn, strict=True):
                if included:
                    _add(params[canary.parameter], field, canary, value)

        return inject

    def release(self, client_id: int, update: Update, generator: torch.Generator) -> Update:
        own = [c for c in self._member_canaries(client_id) if c.parameter in update]
        if self.level == UPDATE and own:
            update = {name: t.clone() for name, t in update.items()}
            for canary in own:
                update[canary.parameter].view(-1)[canary.index] += canary.sign * self.norm
        return self.inner.release(client_id, update, generator)

    # ----------------------------------------------------------------- the record

    def design(self) -> dict[str, Any]:
        """The audit's public record: level, canaries, norm, δ and the accountant's current ε."""
        records = self.privacy_records()
        summary = privacy_summary(records)
        return {
            "version": 1,
            "level": self.level,
            "reason": self.reason,
            "canaries": len(self.canaries),
            "norm": self.norm,
            "delta": self.delta,
            "epsilon": summary["epsilon"],
            "epsilon_delta": summary["delta"],
            "granularity": summary["granularity"],
            "mechanism": summary["mechanism"],
            "client_epsilons": {str(r.client_id): r.epsilon for r in records if r.client_id is not None},
            "canary_list": [c.to_dict() for c in self.canaries],
        }

    def write(self, run_dir: Any) -> None:
        """Write the design (public) and membership (with the ground truth) into ``run_dir``; call after
        training, so the recorded ε is the run's."""
        write_design(run_dir, self.design(), self.members)


def _add(param: nn.Parameter, field: str, canary: Canary, value: float) -> None:
    tensor: Tensor | None = getattr(param, field, None)
    if tensor is None:  # a parameter the loss did not reach this step
        tensor = torch.zeros_like(param)
        setattr(param, field, tensor)
    position = tuple(int(i) for i in torch.unravel_index(torch.tensor(canary.index), tensor.shape))
    tensor[position] += canary.sign * value  # Opacus' summed_grad may be non-contiguous: no view(-1)


def _before(obj: Any, method: str, action: Callable[[], None]) -> Callable[[], None]:
    """Make ``obj.method`` run ``action()`` first (on this instance only); returns the undo."""
    original = getattr(obj, method)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        action()
        return original(*args, **kwargs)

    setattr(obj, method, wrapped)
    return lambda: delattr(obj, method)
