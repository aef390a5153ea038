"""The results schema: every column a results row can hold, defined once.

A :class:`Column` carries its name, kind (utility, leakage, prior, privacy, setting,
bookkeeping, runtime), value type, unit, direction (does a higher value mean more
leakage, or better utility?), table label and formatting, and whether the gate can
bound it. Pipeline rows, the sweep's ``results.csv``/``runtime.csv``, the
``feddp-eval check`` bounds, the report's tables and curves, and the CLI tables all
read this module. Adding a metric means the function that computes it plus one
entry in :data:`COLUMNS`.

Consumers call the accessor functions (:func:`result_columns`, :func:`gate_metrics`,
...) when they need the list, never copy it at import, so an added entry reaches
every output. Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal[
    "setting", "privacy", "utility", "comparison", "reference", "leakage", "prior", "bookkeeping", "runtime"
]
Direction = Literal["leaks-more", "leaks-less", "better", "none"]
ValueType = Literal["float", "int", "str", "round"]
Table = Literal["utility", "leakage"]

MISSING = "–"
"""What a table shows for a value that was not measured."""


@dataclass(frozen=True)
class Column:
    """One column of a results row.

    Attributes:
        name: The key in rows, CSV headers and gate bounds (``psnr`` → ``psnr_min``).
        kind: ``utility`` (Dice of the trained model), ``comparison`` (utility over paired seeds and
            against the undefended arm), ``reference`` (what a tool without a model
            scores on the same tiles), ``leakage`` (what an attack measured),
            ``prior`` (the attacker's guess without the update), ``privacy`` (the accountant),
            ``setting`` (what was run), ``bookkeeping`` (where and how), ``runtime`` (seconds).
        label: Table header (``PSNR dB``).
        type: How a CSV cell is read back: ``float``, ``int``, ``str`` or ``round`` (a round
            number, or ``all``).
        unit: Unit of the value (``dB``, ``s``), empty when unitless.
        direction: ``leaks-more`` (higher means more leakage, e.g. PSNR), ``leaks-less`` (LPIPS),
            ``better`` (higher is better utility), ``none``.
        decimals: Digits after the point in tables; ``None`` for integers and text.
        signed: Show the sign (a margin: ``+1.2``).
        tolerance: Default tolerance of a ``check`` bound on it; ``None``: not a gate metric.
        summary: Aggregated (mean ± sd over seeds and targets) per setting in reports.
        table: The report summary table it appears in, if any.
        lower, upper: The valid range of the value.
        file: ``results`` (``results.csv``), ``runtime`` (``runtime.csv``: wall-clock, kept apart
            so that results.csv is reproducible byte for byte) or ``row`` (rows only).
        swept: A training setting a sweep may vary (``sweep.batch_sizes``): every sweep row holds it,
            but ``results.csv`` has its column only when the sweep varies it, so a sweep without that
            axis writes the same file as before the axis existed.
        description: One line for documentation.
    """

    name: str
    kind: Kind
    label: str
    type: ValueType = "float"
    unit: str = ""
    direction: Direction = "none"
    decimals: int | None = None
    signed: bool = False
    tolerance: float | None = None
    summary: bool = False
    table: Table | None = None
    lower: float = -math.inf
    upper: float = math.inf
    file: Literal["results", "runtime", "row"] = "results"
    swept: bool = False
    description: str = ""

    @property
    def higher_is_better(self) -> bool:
        """For the party it serves: utility for the consortium, leakage for the attacker."""
        return self.direction in ("better", "leaks-more")

    @property
    def arrow(self) -> str:
        """``↑`` when higher means more leakage, ``↓`` when lower does, else empty."""
        return {"leaks-more": " ↑", "leaks-less": " ↓"}.get(self.direction, "")

    def format(self, value: Any) -> str:
        """The table cell of ``value``: its decimals (and sign), or :data:`MISSING`."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return MISSING
        if self.decimals is None:
            return str(value)
        return f"{float(value):{'+' if self.signed else ''}.{self.decimals}f}"


def _score(name: str, label: str, kind: Kind, direction: Direction, decimals: int, **more: Any) -> Column:
    return Column(name, kind, label, direction=direction, decimals=decimals, **more)


_PSNR = {"unit": "dB", "lower": 0.0}
_UNIT = {"lower": 0.0, "upper": 1.0}

COLUMNS: tuple[Column, ...] = (
    Column(
        "key",
        "bookkeeping",
        "point",
        "str",
        description="the sweep point's key (config hash, attack included)",
    ),
    Column("config_hash", "bookkeeping", "config hash", "str", description="the training run's config hash"),
    Column("seed", "setting", "seed", "int", description="the experiment seed"),
    Column("defense", "setting", "defense", "str", description="the defense's registered name"),
    Column("noise", "setting", "σ", lower=0.0, description="the noise multiplier the defense applied"),
    Column(
        "epsilon",
        "privacy",
        "ε",
        tolerance=1e-6,
        lower=0.0,
        description="the accountant's ε at δ (empty: no formal guarantee)",
    ),
    Column("delta", "privacy", "δ", lower=0.0, upper=1.0, description="δ at which ε is reported"),
    Column("granularity", "privacy", "granularity", "str", description="sample-level, client-level or none"),
    Column("accountant", "privacy", "accountant", "str", description="rdp or prv"),
    Column(
        "epsilon_lower_bound",
        "privacy",
        "ε̂",
        tolerance=0.0,
        decimals=2,
        summary=True,
        lower=0.0,
        description="the one-run audit's lower bound on the code's ε at δ, 95% confidence (empty: no audit)",
    ),
    Column("audit_canaries", "privacy", "canaries", "int", lower=0.0, description="m, canaries planted"),
    Column(
        "audit_guesses",
        "privacy",
        "audit guesses",
        "int",
        lower=0.0,
        description="canaries the audit guessed",
    ),
    Column(
        "audit_correct", "privacy", "audit correct", "int", lower=0.0, description="guesses that were right"
    ),
    Column(
        "audit_violated",
        "privacy",
        "ε̂ > ε",
        "int",
        lower=0.0,
        upper=1.0,
        description="1 when some clients' ε̂ exceeds their accountant's ε (a DP bug; fails check), else 0",
    ),
    _score("dice", "Dice", "utility", "better", 3, tolerance=0.01, summary=True, table="utility", **_UNIT),
    _score(
        "jaccard", "Jaccard", "utility", "better", 3, tolerance=0.01, summary=True, table="utility", **_UNIT
    ),
    _score(
        "accuracy",
        "pixel acc.",
        "utility",
        "better",
        3,
        tolerance=0.005,
        summary=True,
        table="utility",
        **_UNIT,
    ),
    _score(
        "otsu_dice",
        "Otsu Dice",
        "reference",
        "better",
        3,
        summary=True,
        table="utility",
        description="Dice of haematoxylin-Otsu (no model) on the same held-out tiles: the floor to beat",
        **_UNIT,
    ),
    Column(
        "utility_seeds",
        "setting",
        "seeds",
        "int",
        lower=1.0,
        file="row",
        description="`attack`: paired training seeds per arm behind dice_mean and delta_dice",
    ),
    _score(
        "dice_mean",
        "Dice (seeds)",
        "comparison",
        "better",
        3,
        file="row",
        description="`attack`: the arm's pooled Dice, mean over its utility seeds",
        **_UNIT,
    ),
    _score(
        "delta_dice",
        "ΔDice",
        "comparison",
        "better",
        4,
        signed=True,
        tolerance=0.0,
        file="row",
        description="`attack`: mean over paired seeds of Dice / undefended Dice − 1 (−0.0055 is −0.55%)",
    ),
    *(
        _score(
            name, label, "comparison", "better", 4, signed=True, file="row", description="its 95% t interval"
        )
        for name, label in (("delta_dice_low", "ΔDice low"), ("delta_dice_high", "ΔDice high"))
    ),
    Column(
        "delta_dice_verdict",
        "comparison",
        "ΔDice verdict",
        "str",
        file="row",
        description="lower / higher (the interval excludes 0), within noise, or cannot tell (one seed)",
    ),
    _score(
        "psnr",
        "PSNR dB",
        "leakage",
        "leaks-more",
        1,
        tolerance=0.3,
        summary=True,
        table="leakage",
        description="PSNR of the MSE pooled over the matched tiles (never a mean of per-tile dB)",
        **_PSNR,
    ),
    _score(
        "psnr_median",
        "median dB",
        "leakage",
        "leaks-more",
        1,
        tolerance=0.3,
        summary=True,
        description="median of the matched tiles' PSNRs",
        **_PSNR,
    ),
    _score(
        "share_30db",
        "≥ 30 dB",
        "leakage",
        "leaks-more",
        2,
        tolerance=0.0,
        summary=True,
        description="share of matched tiles recovered at PSNR >= 30 dB",
        **_UNIT,
    ),
    _score(
        "share_40db",
        "≥ 40 dB",
        "leakage",
        "leaks-more",
        2,
        tolerance=0.0,
        summary=True,
        description="share of matched tiles recovered at PSNR >= 40 dB (to the eye, the tile itself)",
        **_UNIT,
    ),
    _score(
        "ssim",
        "SSIM",
        "leakage",
        "leaks-more",
        3,
        tolerance=0.02,
        summary=True,
        table="leakage",
        lower=-1.0,
        upper=1.0,
    ),
    _score(
        "lpips", "LPIPS", "leakage", "leaks-less", 3, tolerance=0.02, summary=True, table="leakage", lower=0.0
    ),
    _score(
        "mask_dice",
        "mask Dice",
        "leakage",
        "leaks-more",
        3,
        tolerance=0.02,
        summary=True,
        table="leakage",
        **_UNIT,
    ),
    _score("prior_psnr", "prior PSNR", "prior", "leaks-more", 1, summary=True, table="leakage", **_PSNR),
    _score("prior_ssim", "prior SSIM", "prior", "leaks-more", 3, summary=True, table="leakage", lower=-1.0),
    _score("prior_lpips", "prior LPIPS", "prior", "leaks-less", 3, summary=True, lower=0.0),
    _score("prior_mask_dice", "prior mask Dice", "prior", "leaks-more", 3, **_UNIT),
    _score(
        "flat_mask_dice",
        "all-nucleus mask Dice",
        "prior",
        "leaks-more",
        3,
        description="mask Dice of marking every pixel nucleus (masks unknown): the highest Dice a mask "
        "guessed without the update can expect",
        **_UNIT,
    ),
    _score(
        "mask_prior_psnr", "mask-prior PSNR", "prior", "leaks-more", 1, summary=True, table="leakage", **_PSNR
    ),
    _score("mask_prior_ssim", "mask-prior SSIM", "prior", "leaks-more", 3, lower=-1.0, upper=1.0),
    _score("mask_prior_lpips", "mask-prior LPIPS", "prior", "leaks-less", 3, lower=0.0),
    _score(
        "own_guess_psnr",
        "own-guess PSNR",
        "prior",
        "leaks-more",
        1,
        description="PSNR of the attack's own guess without the update, where it holds one (a learned "
        "attack's, from the same public tiles): the bar that credits the update alone",
        **_PSNR,
    ),
    _score("own_guess_ssim", "own-guess SSIM", "prior", "leaks-more", 3, lower=-1.0, upper=1.0),
    _score(
        "margin_psnr",
        "vs prior dB",
        "leakage",
        "leaks-more",
        1,
        signed=True,
        tolerance=0.3,
        unit="dB",
        description="PSNR minus the strongest prior's (both pooled over the tiles; the prior is the "
        "attacker's best guess without the update)",
    ),
    _score(
        "margin_ssim",
        "vs prior SSIM",
        "leakage",
        "leaks-more",
        3,
        signed=True,
        tolerance=0.02,
        description="mean SSIM minus the strongest prior's",
    ),
    Column(
        "prior_kind",
        "bookkeeping",
        "prior",
        "str",
        description="the guess the margins are read against: painted-mask, mean-colour, or own-guess (an "
        "attack's own guess without the update, where it beats the painted-mask guess)",
    ),
    Column(
        "tiles_beating_prior",
        "leakage",
        "tiles > prior",
        "int",
        direction="leaks-more",
        tolerance=0.0,
        lower=0.0,
        description="matched tiles whose PSNR beats the prior's guess of that tile",
    ),
    Column(
        "tiles_exact",
        "leakage",
        "tiles ≥ 40 dB",
        "int",
        direction="leaks-more",
        tolerance=0.0,
        lower=0.0,
        description="matched tiles recovered at PSNR >= 40 dB",
    ),
    Column(
        "tiles_alone",
        "bookkeeping",
        "tiles alone",
        "int",
        lower=0.0,
        description="imprint: true tiles alone in a bin (scoring side)",
    ),
    Column(
        "tiles_read",
        "leakage",
        "tiles read",
        "int",
        direction="leaks-more",
        tolerance=0.0,
        lower=0.0,
        description="imprint: tiles the attack read out of a bin",
    ),
    Column("threat", "setting", "threat", "str", description="honest or malicious server"),
    Column("attack", "setting", "attack", "str", description="the attack's registered name"),
    Column("target_site", "setting", "site", "int", description="the attacked site's index"),
    Column("target_round", "setting", "round", "round", description="the attacked round, or all"),
    Column(
        "batch_size",
        "setting",
        "batch",
        "int",
        lower=1.0,
        swept=True,
        description="the clients' local batch size (`train.batch_size`; a column when the sweep varies it)",
    ),
    Column(
        "local_steps",
        "setting",
        "local steps",
        "int",
        lower=0.0,
        swept=True,
        description="local optimizer steps per round, 0: `train.local_epochs` passes (a column when the "
        "sweep varies it)",
    ),
    Column("rounds_used", "setting", "rounds used", "int", description="rounds inverted jointly"),
    Column("restarts", "setting", "restarts", "int"),
    Column("mask", "setting", "mask", "str", description="known or unknown to the attacker"),
    Column("iterations", "bookkeeping", "iterations", "int"),
    Column("stopped", "bookkeeping", "stopped", "str", description="why the attack stopped (or did not run)"),
    Column("objective", "leakage", "objective", description="the attack's final objective"),
    Column("lpips_missing", "bookkeeping", "LPIPS missing", "str"),
    Column("run_dir", "bookkeeping", "run", "str"),
    Column("tiles", "bookkeeping", "tiles file", "str"),
    Column("train_seconds", "runtime", "training s", unit="s", file="runtime"),
    Column("seconds", "runtime", "attack s", unit="s", file="runtime"),
)


# --------------------------------------------------------------------------- accessors


def column(name: str) -> Column:
    """The column called ``name``; a ``KeyError`` lists the known ones."""
    for c in COLUMNS:
        if c.name == name:
            return c
    raise KeyError(f"no results column {name!r}; known: {', '.join(c.name for c in COLUMNS)}")


def columns(*, kind: Iterable[Kind] | None = None) -> tuple[Column, ...]:
    """Every column (of the given kinds), in schema order."""
    kinds = None if kind is None else set(kind)
    return tuple(c for c in COLUMNS if kinds is None or c.kind in kinds)


def result_columns(swept: Iterable[str] = ()) -> tuple[str, ...]:
    """``results.csv``'s header, with the :func:`swept_columns` named in ``swept`` (those the sweep
    varies; the others are left out, so a sweep without them writes the header it always wrote)."""
    varied = set(swept)
    return tuple(c.name for c in COLUMNS if c.file == "results" and (not c.swept or c.name in varied))


def swept_columns() -> tuple[str, ...]:
    """The training settings a sweep may vary, each a ``results.csv`` column only when it does."""
    return tuple(c.name for c in COLUMNS if c.swept)


def runtime_columns() -> tuple[str, ...]:
    """``runtime.csv``'s header: the point's key, then the wall-clock columns."""
    return ("key", *(c.name for c in COLUMNS if c.file == "runtime"))


def typed_columns(value_type: ValueType) -> frozenset[str]:
    """Names of the columns of one value type (how a CSV cell is read back)."""
    return frozenset(c.name for c in COLUMNS if c.type == value_type)


def gate_metrics() -> tuple[str, ...]:
    """Columns ``feddp-eval check`` can bound (``<name>_min`` / ``<name>_max``)."""
    return tuple(c.name for c in COLUMNS if c.tolerance is not None)


def default_tolerance(name: str) -> float:
    """A gate bound's default tolerance: what a re-run on another CPU may plausibly move."""
    tolerance = column(name).tolerance
    if tolerance is None:
        raise KeyError(f"{name!r} is not a gate metric; known: {', '.join(gate_metrics())}")
    return tolerance


def summary_metrics() -> tuple[str, ...]:
    """Columns aggregated (mean ± sd) per defense setting in reports."""
    return tuple(c.name for c in COLUMNS if c.summary)


def table_columns(table: Table) -> tuple[Column, ...]:
    """The metric columns of one report summary table, in schema order."""
    return tuple(c for c in COLUMNS if c.table == table)


def attack_metrics() -> tuple[str, ...]:
    """What an attack measures: absent (``None``) when it could not run, so no prior stands in."""
    return tuple(c.name for c in COLUMNS if c.kind == "leakage")


def pick(row: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """``row`` cut to ``names`` (missing ones ``None``), in that order."""
    return {n: row.get(n) for n in names}


# --------------------------------------------------------------------------- labels


def setting_label(defense: str, noise: float | None) -> str:
    """``"none"`` or ``"dp-sgd σ=0.01"``: how a defense setting is named everywhere."""
    if defense == "none" or noise is None:
        return defense
    return f"{defense} σ={noise:g}"


def three_digits(value: float) -> str:
    """3 significant digits: ``1.82``, ``66.7``, ``667``; scientific outside [0.01, 1000): ``2.00e+03``."""
    return f"{value:.3g}" if 0.01 <= abs(value) < 1000 else f"{value:.2e}"


def format_epsilon(epsilon: float | None) -> str:
    """ε in a table cell (:func:`three_digits`); ``∞`` when there is no formal guarantee (no
    defense, or a mechanism without an accountant)."""
    if epsilon is None or math.isinf(epsilon):
        return "∞"
    return three_digits(epsilon)


def privacy_text(
    epsilon: float | None, delta: float | None, granularity: str | None, accountant: str | None = None
) -> str:
    """``ε = 3.21, δ = 1e-05, sample-level, rdp``, or ``ε = ∞, no formal guarantee``: never ε without δ."""
    if epsilon is None or delta is None:
        return "ε = ∞, no formal guarantee"
    labels = [f"δ = {delta:g}", *(x for x in (granularity, accountant) if x and x != "none")]
    return ", ".join([f"ε = {format_epsilon(epsilon)}", *labels])


# --------------------------------------------------------------------------- an attack that could not run

NOT_RUN = "not run"
"""How ``stopped`` begins in the row of an attack that could not run (its reason follows)."""


def mark_not_run(row: dict[str, Any], reason: str) -> dict[str, Any]:
    """``row`` with every attack metric absent and ``stopped`` saying why the attack did not run."""
    # What an attack measures is absent: no prior's number stands in.
    return {**row, **{k: None for k in attack_metrics() if k in row}, "stopped": f"{NOT_RUN}: {reason}"}


def not_run_reason(row: Mapping[str, Any]) -> str | None:
    """Why the attack of a results row could not run, or ``None`` when it ran."""
    stopped = row.get("stopped")
    if isinstance(stopped, str) and stopped.startswith(NOT_RUN):
        return stopped[len(NOT_RUN) :].lstrip(": ") or "unknown reason"
    return None
