"""One summary row per defense setting, and its text/CSV/Markdown forms (verdicts: :mod:`reports.verdicts`).

Pure functions over the typed rows of :class:`reports.results.ResultsSet`: no files, no figures.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from feddp_eval import schema
from feddp_eval.metrics.significance import PairedDelta
from feddp_eval.plugins import defense_card
from feddp_eval.schema import setting_label

LEAK_MARGIN_DB = 1.0
"""A setting leaks when its mean PSNR exceeds the mean PSNR of the prior guess by more than this."""


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof=1; ``None`` for fewer than two values) of one metric."""

    mean: float | None
    sd: float | None
    n: int


@dataclass(frozen=True)
class SettingSummary:
    """One defense setting (attack, defense, noise) aggregated over seeds and targets."""

    attack: str
    defense: str
    noise: float
    n: int
    epsilon: float | None
    delta: float | None
    granularity: str | None
    accountant: str | None
    stats: dict[str, Stat]
    dice_change_pct: float | None
    threat: str = "honest"  # "malicious" for a server that changed the model it sent (imprint)
    dice_change: PairedDelta | None = None  # ΔDice paired by seed with its interval and verdict

    @property
    def threat_label(self) -> str:
        """``honest server`` or ``malicious server``: whose attack this setting's leakage measures."""
        return f"{self.threat} server"

    @property
    def label(self) -> str:
        """``"none"`` or ``"dp-sgd σ=0.01"``."""
        return setting_label(self.defense, self.noise)

    @property
    def key(self) -> tuple[str, str, float]:
        """``(attack, defense, noise)``: unique per setting."""
        return (self.attack, self.defense, self.noise)

    def rows(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The result rows this setting aggregates."""
        return [r for r in rows if _row_key(r) == self.key]

    def mean(self, metric: str) -> float | None:
        """The mean of ``metric`` over this setting's rows, or ``None`` when never measured."""
        return self.stats[metric].mean

    @property
    def reference(self) -> tuple[str, float | None]:
        """The best guess the attacker had without the update, and its mean PSNR.

        With the masks known that is the masks painted in the site's public colours (the stronger
        guess: the attacker holds it before reading a single gradient); otherwise the site's mean
        colour. Leakage is what the update adds on top of it.
        """
        painted = self.mean("mask_prior_psnr")
        if painted is not None:
            return "the mask-painted prior", painted
        return "the mean-colour prior", self.mean("prior_psnr")

    @property
    def leakage_gap_db(self) -> float | None:
        """Mean PSNR minus the reference prior's mean PSNR (dB), or ``None`` when either is missing."""
        psnr, prior = self.mean("psnr"), self.reference[1]
        return None if psnr is None or prior is None else psnr - prior

    @property
    def leaks(self) -> bool | None:
        """Whether the reconstruction beats the reference prior by more than :data:`LEAK_MARGIN_DB`."""
        gap = self.leakage_gap_db
        return None if gap is None else gap > LEAK_MARGIN_DB


# --------------------------------------------------------------------------- aggregation


def stat(values: Iterable[Any]) -> Stat:
    """Mean and sample sd of the non-missing, finite values."""
    data = np.array([float(v) for v in values if v is not None and math.isfinite(float(v))], dtype=float)
    if data.size == 0:
        return Stat(None, None, 0)
    sd = float(np.std(data, ddof=1)) if data.size > 1 else None
    return Stat(float(np.mean(data)), sd, int(data.size))


def defense_rank(defense: str) -> tuple[int, int, str]:
    """Sort key: the defenses that declare a report order in that order (the undefended reference
    first), then the rest alphabetically."""
    card = defense_card(defense)
    if card is None or card.order is None:
        return (1, 0, defense)
    return (0, card.order, defense)


def defense_protects(defense: str) -> str:
    """What ``defense`` does and whom it protects, as the defense declares it."""
    card = defense_card(defense)
    return card.protects if card is not None and card.protects else "a custom defense (see its documentation)"


def summarize(rows: Sequence[dict[str, Any]]) -> list[SettingSummary]:
    """Group rows by (attack, defense, noise) and aggregate every metric over seeds and targets.

    ΔDice % = 100 · (dice − dice_none) / dice_none with the means of the same attack's undefended
    setting (``None`` when that setting is missing).
    """
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_row_key(row), []).append(row)
    ordered = sorted(groups, key=lambda k: (k[0], defense_rank(k[1]), k[2]))
    reference = {k[0]: stat(r["dice"] for r in groups[k]).mean for k in ordered if k[1] == "none"}
    undefended = {k[0]: groups[k] for k in ordered if k[1] == "none"}
    return [
        dataclasses.replace(
            _setting(key, groups[key], reference.get(key[0])),
            dice_change=paired_dice_change(groups[key], undefended.get(key[0], [])),
        )
        for key in ordered
    ]


def paired_dice_change(
    rows: Sequence[dict[str, Any]], reference: Sequence[dict[str, Any]]
) -> PairedDelta | None:
    """Relative Dice change from the undefended rows of the same seed and target, with a paired t
    interval over seeds (``None`` for the reference itself or when no seed pairs up)."""
    from feddp_eval.metrics.significance import paired_relative_delta

    def by_seed(group: Sequence[dict[str, Any]]) -> dict[tuple[Any, Any], float]:
        return {(r.get("seed"), r.get("target_site")): r["dice"] for r in group if r.get("dice") is not None}

    mine, theirs = by_seed(rows), by_seed(reference)
    pairs = sorted(k for k in mine if theirs.get(k))
    if not pairs or all(r.get("defense") == "none" for r in rows):
        return None
    return paired_relative_delta([mine[k] for k in pairs], [theirs[k] for k in pairs])


def _row_key(row: dict[str, Any]) -> tuple[str, str, float]:
    return (str(row.get("attack") or "?"), str(row["defense"]), float(row.get("noise") or 0.0))


def _setting(
    key: tuple[str, str, float], rows: list[dict[str, Any]], dice_none: float | None
) -> SettingSummary:
    attack, defense, noise = key
    stats = {m: stat(r.get(m) for r in rows) for m in schema.summary_metrics()}
    epsilons = [r["epsilon"] for r in rows if r.get("epsilon") is not None]
    epsilon = None
    if epsilons:
        epsilon = math.inf if any(math.isinf(e) for e in epsilons) else float(np.mean(epsilons))
    dice = stats["dice"].mean
    change = None if dice is None or not dice_none else 100.0 * (dice - dice_none) / dice_none
    return SettingSummary(
        attack=attack,
        defense=defense,
        noise=noise,
        n=len(rows),
        epsilon=epsilon,
        delta=_common(r.get("delta") for r in rows),
        granularity=_common(r.get("granularity") for r in rows),
        accountant=_common(r.get("accountant") for r in rows),
        stats=stats,
        dice_change_pct=change,
        threat="malicious" if any(r.get("threat") == "malicious" for r in rows) else "honest",
    )


def _common(values: Iterable[Any]) -> Any:
    """The single value shared by the rows, ``"/"``-joined distinct strings, or ``None``."""
    distinct = list(dict.fromkeys(v for v in values if v is not None))
    if not distinct:
        return None
    if len(distinct) == 1:
        return distinct[0]
    return "/".join(str(v) for v in distinct)


# --------------------------------------------------------------------------- formatting


def fmt_epsilon(s: SettingSummary) -> str:
    """The setting's ε as a table cell (:func:`feddp_eval.schema.format_epsilon`)."""
    return schema.format_epsilon(None if s.defense == "none" else s.epsilon)


def level(granularity: str | None) -> str | None:
    """``"sample"`` for ``"sample"`` or ``"sample-level"``; ``None`` for no granularity (or ``"none"``)."""
    if not granularity or granularity == "none":
        return None
    return granularity.removesuffix("-level")


def fmt_privacy(s: SettingSummary) -> str:
    """``"ε = 12.3, δ = 1e-05, sample-level, rdp"`` (:func:`feddp_eval.schema.privacy_text`)."""
    granularity = level(s.granularity)
    return schema.privacy_text(
        None if s.defense == "none" else s.epsilon,
        s.delta if isinstance(s.delta, float) else None,
        f"{granularity}-level" if granularity else None,
        s.accountant if isinstance(s.accountant, str) else None,
    )


def fmt_stat(value: Stat, decimals: int) -> str:
    """``"0.812 ± 0.004"`` (several values), ``"0.812"`` (one), ``"—"`` (none)."""
    if value.mean is None:
        return "—"
    text = f"{value.mean:.{decimals}f}"
    return text if value.sd is None else f"{text} ± {value.sd:.{decimals}f}"


def fmt_change(value: float | None) -> str:
    """``"+0.0%"``-style ΔDice (a change that rounds to zero is ``+0.0%``, never ``-0.0%``), or ``"—"``."""
    if value is None:
        return "—"
    return f"{value if round(value, 1) != 0 else 0.0:+.1f}%"


def fmt_dice_change(s: SettingSummary) -> str:
    """ΔDice with its seed-noise verdict: ``"-5.6% (lower, 3 seeds)"``, ``"-0.4% (within seed
    noise, 3 seeds)"``, ``"-0.4% (1 seed: cannot tell)"``; the plain change for the reference."""
    change = fmt_change(s.dice_change_pct)
    d = s.dice_change
    if d is None or s.dice_change_pct is None:
        return change
    if d.verdict == "cannot tell":
        return f"{change} (1 seed: cannot tell)"
    verdict = "within seed noise" if d.verdict == "within noise" else d.verdict
    return f"{change} ({verdict}, {d.seeds} seeds)"


def fmt_noise(noise: float) -> str:
    """The noise multiplier σ as the user typed it (``0.01``, ``1.1``)."""
    return f"{noise:g}"


Column = tuple[str, Callable[[SettingSummary], str]]


def _metric(c: schema.Column) -> Column:
    return (c.label, lambda s: fmt_stat(s.stats[c.name], c.decimals or 0))


def _setting_columns() -> list[Column]:
    return [("defense", lambda s: s.defense), ("σ", lambda s: fmt_noise(s.noise)), ("ε", fmt_epsilon)]


def utility_columns() -> list[Column]:
    """The utility table: the setting, its privacy budget, the schema's utility metrics, ΔDice."""
    return [
        *_setting_columns(),
        ("δ", lambda s: "—" if s.delta is None else f"{s.delta:g}"),
        ("granularity", lambda s: level(s.granularity) or "—"),
        ("accountant", lambda s: s.accountant or "—"),
        ("n", lambda s: str(s.n)),
        *(_metric(c) for c in schema.table_columns("utility")),
        ("ΔDice", fmt_dice_change),
    ]


def leakage_columns() -> list[Column]:
    """The leakage table: the setting, the schema's leakage and prior metrics, the verdict."""
    return [
        *_setting_columns(),
        *(_metric(c) for c in schema.table_columns("leakage")),
        ("leaks", lambda s: {True: "yes", False: "no", None: "—"}[s.leaks]),
    ]


def table(
    summaries: Sequence[SettingSummary], columns: Sequence[Column]
) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells; an ``attack`` column is added first when several attacks ran."""
    if len({s.attack for s in summaries}) > 1:
        columns = [("attack", lambda s: s.attack), *columns]
    return [name for name, _ in columns], [[cell(s) for _, cell in columns] for s in summaries]


def markdown_table(headers: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines)


def csv_columns() -> tuple[str, ...]:
    """summary.csv's header: the setting, then mean and sd of every summary metric of the schema."""
    return (
        "attack",
        "defense",
        "noise",
        "n",
        "epsilon",
        "delta",
        "granularity",
        "accountant",
        *(f"{m}_{part}" for m in schema.summary_metrics() for part in ("mean", "sd")),
        "dice_change_pct",
        "dice_change_low_pct",
        "dice_change_high_pct",
        "dice_change_verdict",
        "leaks",
    )


def csv_rows(summaries: Sequence[SettingSummary]) -> list[dict[str, Any]]:
    """Numeric summary rows (``None`` → empty cell) in :func:`csv_columns` order."""
    out = []
    for s in summaries:
        row: dict[str, Any] = {
            "attack": s.attack,
            "defense": s.defense,
            "noise": s.noise,
            "n": s.n,
            "epsilon": s.epsilon,
            "delta": s.delta,
            "granularity": s.granularity,
            "accountant": s.accountant,
        }
        for m in schema.summary_metrics():
            row[f"{m}_mean"], row[f"{m}_sd"] = s.stats[m].mean, s.stats[m].sd
        row["dice_change_pct"] = s.dice_change_pct
        d = s.dice_change
        row["dice_change_low_pct"] = None if d is None or d.low is None else 100.0 * d.low
        row["dice_change_high_pct"] = None if d is None or d.high is None else 100.0 * d.high
        row["dice_change_verdict"] = None if d is None else d.verdict
        row["leaks"] = None if s.leaks is None else str(s.leaks).lower()
        out.append(row)
    return out
