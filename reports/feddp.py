"""FedDP's claim read off a sweep: at which σ does each mechanism cost FedDP's −0.55% Dice, what ε
is that, and do the attacks still leak there?

FedDP (FedAvg + differential privacy on H&E segmentation) reports −0.55% Dice relative to FedAvg
without DP, without stating the privacy level. A sweep gives the cost per σ; this module finds
where each mechanism's mean ΔDice crosses −0.55% (interpolated in log σ between the two tested σ
around the crossing) and reads ε and leakage at the first tested σ at or beyond it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from reports.summary import SettingSummary, fmt_dice_change, fmt_noise, fmt_privacy

FEDDP_DICE_CHANGE_PCT = -0.55
"""FedDP's reported utility cost: −0.55% Dice relative to FedAvg without DP."""


@dataclass(frozen=True)
class ClaimReading:
    """Where one mechanism reaches FedDP's cost.

    Attributes:
        defense: The mechanism.
        sigma: The σ where the mean ΔDice crosses −0.55% (interpolated in log σ); ``None`` when the
            tested σ do not bracket the crossing.
        at: The first tested setting at or beyond the crossing (ε and leakage are read there);
            ``None`` when no tested σ costs that much.
        below: The last tested setting that costs less (``None`` when the smallest already does).
        resolved: The first tested setting that costs at least that much *outside seed noise* (its
            paired interval over seeds lies below 0); ``None`` when none does. With a few seeds a
            −0.55% mean is usually noise: this is the σ at which the cost is measured, not guessed.
    """

    defense: str
    sigma: float | None
    at: SettingSummary | None
    below: SettingSummary | None
    resolved: SettingSummary | None = None


def claim_readings(summaries: Sequence[SettingSummary]) -> list[ClaimReading]:
    """One reading per defended mechanism, from the honest-server attack's rows (each setting's Dice is
    its training runs'; the malicious server's runs are trained apart)."""
    honest = [s for s in summaries if s.threat == "honest"] or list(summaries)
    attack = honest[0].attack if honest else None
    mine = [s for s in honest if s.attack == attack and s.dice_change_pct is not None]
    readings = []
    for defense in dict.fromkeys(s.defense for s in mine if s.defense != "none"):
        settings = sorted((s for s in mine if s.defense == defense and s.noise > 0), key=lambda s: s.noise)
        costly = [i for i, s in enumerate(settings) if (s.dice_change_pct or 0.0) <= FEDDP_DICE_CHANGE_PCT]
        if not settings:
            continue
        if not costly:
            readings.append(ClaimReading(defense, None, None, settings[-1]))
            continue
        first = costly[0]
        below = settings[first - 1] if first > 0 else None
        sigma = _crossing(below, settings[first]) if below is not None else None
        resolved = next((settings[i] for i in costly if _outside_noise(settings[i])), None)
        readings.append(ClaimReading(defense, sigma, settings[first], below, resolved))
    return readings


def _outside_noise(setting: SettingSummary) -> bool:
    """Whether the setting's Dice is lower than the undefended one's outside seed noise."""
    return setting.dice_change is not None and setting.dice_change.verdict == "lower"


def _crossing(below: SettingSummary, at: SettingSummary) -> float:
    """σ where ΔDice reaches −0.55%, linear in log σ between two tested settings."""
    low, high = below.dice_change_pct or 0.0, at.dice_change_pct or 0.0
    share = 1.0 if high == low else (FEDDP_DICE_CHANGE_PCT - low) / (high - low)
    return math.exp(math.log(below.noise) + share * (math.log(at.noise) - math.log(below.noise)))


def claim_sentences(summaries: Sequence[SettingSummary]) -> list[str]:
    """The report's reading of FedDP's −0.55%: one sentence per mechanism, with the leakage of every
    attack (honest and malicious server) at that setting."""
    sentences = []
    for r in claim_readings(summaries):
        if r.at is None:
            top = r.below
            assert top is not None
            sentences.append(
                f"FedDP's −0.55% Dice: {r.defense} never costs that much at the tested σ (at the largest, "
                f"σ = {fmt_noise(top.noise)} ({fmt_privacy(top)}), Dice changes by {fmt_dice_change(top)})."
            )
            continue
        where = (
            f"at σ ≈ {r.sigma:.3g} (between the tested σ = {fmt_noise(r.below.noise)} and "
            f"{fmt_noise(r.at.noise)})"
            if r.sigma is not None and r.below is not None
            else f"already at the smallest tested σ = {fmt_noise(r.at.noise)}"
        )
        sentence = (
            f"FedDP's −0.55% Dice: {r.defense} costs that much {where}. At σ = {fmt_noise(r.at.noise)} "
            f"({fmt_privacy(r.at)}; Dice {fmt_dice_change(r.at)}): {_leakage(summaries, r.at)}."
        )
        if r.resolved is None:
            sentence += " No tested σ costs that much outside seed noise."
        elif r.resolved is not r.at:
            sentence += (
                f" The first tested σ whose cost is outside seed noise is σ = {fmt_noise(r.resolved.noise)} "
                f"({fmt_privacy(r.resolved)}; Dice {fmt_dice_change(r.resolved)}): "
                f"{_leakage(summaries, r.resolved)}."
            )
        sentences.append(sentence)
    return sentences


def _leakage(summaries: Sequence[SettingSummary], at: SettingSummary) -> str:
    """Whether each attack leaks at ``at``'s defense and σ."""
    parts = []
    for s in summaries:
        if (s.defense, s.noise) != (at.defense, at.noise):
            continue
        gap = s.leakage_gap_db
        verdict = (
            "cannot be judged"
            if s.leaks is None
            else ("leaks (at least this much)" if s.leaks else "rebuilt no more than the guess")
        )
        margin = "" if gap is None else f" ({gap:+.1f} dB vs {s.reference[0]})"
        parts.append(f"the {s.threat_label}'s {s.attack} {verdict}{margin}")
    return "; ".join(parts) or "no attack was run at this setting"
