"""Flower's own DP building blocks set to this toolkit's mechanisms, where the mechanisms are the same.

- ``central-dp`` ↔ Flower's ``DifferentialPrivacyServerSideFixedClipping`` (:func:`central_dp_strategy`):
  both clip each update (``received − sent``) to global L2 norm C (FlatClip), average the m clipped
  updates **with equal weights**, and add N(0, (σC/m)²) to every coordinate. Flower adds the noise
  to the averaged weights, we to the averaged update; the global weights are constant, so the
  released model has the same distribution. Two differences remain: Flower's inner ``FedAvg``
  weights by ``num-examples`` unless told otherwise (then the heaviest client's sensitivity is
  C·wᵢ/Σw > C/m, and σC/m under-protects it), so :func:`central_dp_strategy` makes it weight by a
  constant; and Flower's m is the configured ``num_sampled_clients``, ours the number of updates
  received in the round (equal when every sampled client answers).
- ``local-dp`` ↔ Flower's ``LocalDpMod`` (:func:`local_dp_mod`): both clip the update to C and add
  Gaussian noise. Flower's standard deviation is ``sensitivity·√(2 ln(1.25/δ))/ε``; with
  ``sensitivity = C`` and ``ε = √(2 ln(1.25/δ))/σ`` it is our σC.

Accounting differs: ``LocalDpMod``'s ε is the classical one-shot Gaussian mechanism's (valid for
ε < 1 only) and composes nothing over rounds; the fixed-clipping strategy accounts nothing unless
given a ``PrivacyAccountant`` (no amplification by sampling). feddp-eval reports its own RDP/PRV
composition over every round, as for the ``local`` engine. Flower draws its noise from NumPy's
global generator, not from the run's seeded generators, so a run using these blocks is not
reproducible draw for draw. And Flower's clipping divides by the update's norm: an all-zero update
(a client that did not move) raises ``ZeroDivisionError`` there, where ours leaves it as it is.
"""

from __future__ import annotations

import math

from flwr.clientapp.mod import LocalDpMod
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg, Strategy

from feddp_eval.config import DefenseConfig

EQUAL_WEIGHT = "feddp-equal-weight"  # a metric every client reports as 1: FedAvg weights clients equally


def equal_weight_fedavg(**settings: object) -> FedAvg:
    """Flower's FedAvg averaging clients with equal weights (clients report ``feddp-equal-weight = 1``)."""
    return FedAvg(weighted_by_key=EQUAL_WEIGHT, **settings)  # type: ignore[arg-type]


def central_dp_strategy(
    config: DefenseConfig, *, num_sampled_clients: int, inner: Strategy | None = None
) -> DifferentialPrivacyServerSideFixedClipping:
    """Flower's server-side fixed clipping with ``config``'s C and σ (our ``central-dp``).

    Args:
        config: A ``central-dp`` section (``noise`` σ, ``clip`` C).
        num_sampled_clients: m, the clients sampled every round.
        inner: The strategy it wraps; must weight clients equally (default: :func:`equal_weight_fedavg`).
    """
    _require(config, "central-dp")
    return DifferentialPrivacyServerSideFixedClipping(
        inner or equal_weight_fedavg(),
        noise_multiplier=config.noise,
        clipping_norm=config.clip,
        num_sampled_clients=num_sampled_clients,
    )


def local_dp_mod(config: DefenseConfig) -> LocalDpMod:
    """Flower's ``LocalDpMod`` adding our ``local-dp`` noise: clip to C, N(0, (σC)²) per coordinate."""
    _require(config, "local-dp")
    epsilon = math.sqrt(2 * math.log(1.25 / config.delta)) / config.noise if config.noise > 0 else math.inf
    return LocalDpMod(clipping_norm=config.clip, sensitivity=config.clip, epsilon=epsilon, delta=config.delta)


def _require(config: DefenseConfig, name: str) -> None:
    if config.name != name:
        raise ValueError(f"this maps the {name} defense, but got {config.name!r}")
    if config.target_epsilon is not None:
        raise ValueError(
            f"give {name}'s `noise` σ, not `target_epsilon` ({config.target_epsilon}): Flower takes σ as is"
        )
