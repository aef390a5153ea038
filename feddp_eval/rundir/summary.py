"""A training run's ``summary.json`` as a typed value: what ``feddp-eval train`` returns and writes.

:class:`TrainSummary` is written by :func:`feddp_eval.workflows.train.run_train` and read back by
:func:`feddp_eval.rundir.prepare.finished_summary`; :meth:`TrainSummary.to_json` gives the object the
file holds (and ``train --json`` prints), key for key as it was when the summary was a plain dict.
Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Scores = dict[str, float]
"""Utility of one site (or ``pooled``): ``dice``, ``jaccard``, ``accuracy``, each in [0, 1]."""

OPTIONAL = ("reference", "seconds")
"""Keys a summary may lack: written by every run of this version, absent from older (or unfinished)
ones; :meth:`TrainSummary.to_json` leaves them out when ``None``."""


@dataclass(frozen=True)
class TrainSummary:
    """The final pooled and per-site utility of a training run and the privacy it spent.

    Attributes:
        run_dir: The run directory, as given.
        config_hash: The resolved config's hash (hex).
        rounds: FedAvg rounds trained.
        dice, jaccard, accuracy: Pooled held-out utility of the final global model, in [0, 1].
        sites: The same per site name, and ``pooled``.
        defense: The defense's settings (``name``, ``noise_multiplier``, ...).
        privacy: The headline privacy record (``privacy.json`` without ``per_client``): ``epsilon``,
            ``delta``, ``granularity``, ``accountant``, ``mechanism``, ``noise_multiplier``, ``clip``,
            and, when they apply, ``server`` and the one-run ``audit``.
        epsilon: The accountant's ε at ``delta``; ``None``: no formal guarantee (``inf``: spent).
        delta: δ at which ε is reported; ``None`` without a guarantee.
        granularity: ``sample-level``, ``client-level`` or ``none``.
        warnings: The defense's notes about the run (a calibration clipped, ...).
        model_parameters: Trainable parameters of the U-Net.
        reference: Haematoxylin-Otsu's scores on the same tiles (``name``, ``sites``), ``None`` in a run
            older than it.
        seconds: Wall-clock seconds of the run; ``None`` before the run finished.
    """

    run_dir: str
    config_hash: str
    rounds: int
    dice: float
    jaccard: float
    accuracy: float
    sites: dict[str, Scores]
    defense: dict[str, Any]
    privacy: dict[str, Any]
    epsilon: float | None
    delta: float | None
    granularity: str
    warnings: tuple[str, ...]
    model_parameters: int
    reference: dict[str, Any] | None = None
    seconds: float | None = None

    @property
    def defense_name(self) -> str:
        return str(self.defense["name"])

    @property
    def accountant(self) -> str | None:
        """``rdp`` or ``prv``; ``None`` without a formal guarantee."""
        return self.privacy.get("accountant")

    @property
    def noise_multiplier(self) -> float | None:
        """σ the defense applied (the calibrated one when ``target_epsilon`` was given), if it has one."""
        return self.privacy.get("noise_multiplier")

    @property
    def audit(self) -> dict[str, Any] | None:
        """The one-run audit's record (ε̂, canaries, guesses...), ``None`` when no audit ran."""
        return self.privacy.get("audit")

    @property
    def otsu(self) -> dict[str, Scores]:
        """Haematoxylin-Otsu's scores per site and ``pooled``; empty in a run older than the reference."""
        return dict((self.reference or {}).get("sites", {}))

    @property
    def otsu_dice(self) -> float | None:
        """Otsu's pooled Dice, the floor a trained model has to beat; ``None`` without the reference."""
        return self.otsu.get("pooled", {}).get("dice")

    def to_json(self) -> dict[str, Any]:
        """The object ``summary.json`` holds: every field by its name, ``reference`` and ``seconds`` only
        when set."""
        data: dict[str, Any] = {
            "run_dir": self.run_dir,
            "config_hash": self.config_hash,
            "rounds": self.rounds,
            "dice": self.dice,
            "jaccard": self.jaccard,
            "accuracy": self.accuracy,
            "sites": self.sites,
            "defense": self.defense,
            "privacy": self.privacy,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "granularity": self.granularity,
            "warnings": list(self.warnings),
            "model_parameters": self.model_parameters,
        }
        data.update({k: v for k in OPTIONAL if (v := getattr(self, k)) is not None})
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainSummary:
        """The summary in ``data`` (a parsed ``summary.json``); a ``KeyError`` names a missing key.

        Check the file with :func:`feddp_eval.rundir.check.summary_problem` first: it says what is wrong
        in words.
        """
        return cls(
            run_dir=data["run_dir"],
            config_hash=data["config_hash"],
            rounds=data["rounds"],
            dice=data["dice"],
            jaccard=data["jaccard"],
            accuracy=data["accuracy"],
            sites=dict(data["sites"]),
            defense=dict(data["defense"]),
            privacy=dict(data["privacy"]),
            epsilon=data["epsilon"],
            delta=data["delta"],
            granularity=data["granularity"],
            warnings=tuple(data["warnings"]),
            model_parameters=data["model_parameters"],
            reference=data.get("reference"),
            seconds=data.get("seconds"),
        )


REQUIRED = tuple(k for k in TrainSummary.__dataclass_fields__ if k not in OPTIONAL)
"""The keys every ``summary.json`` holds."""
