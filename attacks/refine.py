"""Second phase of an optimisation attack: L-BFGS with a strong-Wolfe line search, from the best iterate.

Signed Adam (Inverting Gradients) is robust far from the answer but takes steps of fixed size in
every pixel, so near the answer it circles instead of landing: the basin benchmark
(``benchmarks/inversion_basin.py``) shows it leaving a start at 40 dB for one below 30 dB. A
quasi-Newton method with a line search converges on a smooth objective whose minimum is the
truth (the L2 distance between the simulated and the captured update, :mod:`attacks.inverting_gradients`),
so the attack runs Adam first and this refinement after it: free pixels, optionally in float64
(the relative update residual near the answer is below float32's resolution on a sum over ~10⁵
parameters), the box [0, 1] restored after every chunk of iterations, the best iterate kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

Objective = Callable[[Tensor, Tensor], Tensor]  # (images (N, 3, H, W), masks (N, 1, H, W)) -> scalar


def lbfgs_refine(
    objective: Objective,
    images: Tensor,
    masks: Tensor,
    *,
    mask_free: bool,
    iterations: int,
    deadline: float | None = None,
    chunk: int = 20,
    on_chunk: Callable[[int, float], None] | None = None,
) -> tuple[Tensor, Tensor, float, int, str]:
    """Minimise ``objective`` over the pixels (and, when ``mask_free``, the mask logits) by L-BFGS.

    Args:
        objective: The attack's objective of one restart, in the dtype of ``images``.
        images: (N, 3, H, W) start in [0, 1] (the first phase's best iterate).
        masks: (N, 1, H, W) the known masks, or the first phase's mask probabilities.
        mask_free: Whether the masks are unknown (then refined as logits as well).
        iterations: L-BFGS iterations at most (each one or a few objective evaluations).
        deadline: ``time.perf_counter()`` value after which to stop (``None``: none).
        chunk: Iterations per L-BFGS call; the box is restored and the deadline checked between calls.
        on_chunk: Called with (iterations done, best objective) after every chunk.

    Returns:
        The best images (clamped to [0, 1]), their masks, the best objective, the iterations run and
        why it stopped (``budget``, ``converged``, ``time`` or ``non-finite``).
    """
    x = images.detach().clone().requires_grad_()
    logits = torch.logit(masks.detach().clamp(1e-4, 1 - 1e-4)).requires_grad_() if mask_free else None
    variables = [x] if logits is None else [x, logits]

    def current_masks() -> Tensor:
        return masks if logits is None else torch.sigmoid(logits)

    best_value = float(objective(x.detach(), current_masks().detach()))
    best = (x.detach().clone(), current_masks().detach().clone())
    optimizer = torch.optim.LBFGS(
        variables,
        lr=1.0,
        max_iter=chunk,
        history_size=50,
        line_search_fn="strong_wolfe",
        tolerance_grad=0.0,
        tolerance_change=0.0,
    )

    def closure() -> Tensor:
        nonlocal best_value, best
        optimizer.zero_grad(set_to_none=True)
        # The objective sees the iterate in the box (as it is scored); pixels pushed out stay put
        # until the clamp after the chunk puts them on the boundary, where their gradient flows again.
        value = objective(x.clamp(0, 1), current_masks())
        value.backward()
        number = float(value.detach())
        if number == number and number < best_value:
            best_value = number
            best = (x.detach().clamp(0, 1), current_masks().detach().clone())
        return value

    done, stopped = 0, "budget"
    while done < iterations:
        before = best_value
        steps = min(chunk, iterations - done)
        optimizer.param_groups[0]["max_iter"] = steps
        optimizer.param_groups[0]["max_eval"] = steps * 5 // 4
        optimizer.step(closure)
        done += steps
        with torch.no_grad():
            if not bool(torch.isfinite(x).all()):
                stopped = "non-finite"
                break
            x.clamp_(0.0, 1.0)
        if on_chunk:
            on_chunk(done, best_value)
        if deadline is not None and time.perf_counter() > deadline:
            stopped = "time"
            break
        if best_value >= before:  # a whole chunk without progress: the line search has stalled
            stopped = "converged"
            break
    return best[0].clamp(0, 1), best[1], best_value, done, stopped
