"""The leakage verdicts: one sentence per defense over its settings, read against the attacker's prior.

Pure functions over :class:`~reports.summary.SettingSummary`; see :data:`LEAK_MARGIN_DB` for the rule.
An attack's success is a lower bound on what its attacker could rebuild, never an upper bound: a
setting where it gains nothing over the guess is worded "this attack rebuilt no more than the guess",
never "does not leak", and a leak is "at least" the margin measured.
"""

from __future__ import annotations

from collections.abc import Sequence

from feddp_eval.plugins import defense_card
from reports.summary import (
    LEAK_MARGIN_DB,
    SettingSummary,
    fmt_dice_change,
    fmt_noise,
    fmt_privacy,
    stat,
)


def verdicts(summaries: Sequence[SettingSummary]) -> list[str]:
    """One sentence per (attack,) defense, undefended first; see :data:`LEAK_MARGIN_DB` for the rule."""
    attacks = list(dict.fromkeys(s.attack for s in summaries))
    sentences = []
    for attack in attacks:
        mine = [s for s in summaries if s.attack == attack]
        prefix = f"[{mine[0].threat_label} · {attack}] " if len(attacks) > 1 else ""
        for defense in dict.fromkeys(s.defense for s in mine):
            settings = sorted((s for s in mine if s.defense == defense), key=lambda s: s.noise)
            sentences.append(prefix + defense_verdict(defense, settings))
    return sentences


def defense_verdict(defense: str, settings: Sequence[SettingSummary]) -> str:
    """The verdict sentence of one defense over its settings (sorted by noise)."""
    if defense == "none":
        s = settings[0]
        return f"Without a defense {_leak_phrase(s)}."
    judged = [s for s in settings if s.leaks is not None]
    if not judged:
        return f"{defense}: no PSNR or prior PSNR was measured, so leakage cannot be judged."
    noises = _noise_range(judged)
    leaking = [s for s in judged if s.leaks]
    if len(leaking) == len(judged):
        smallest = min(judged, key=lambda s: s.leakage_gap_db or 0.0)
        text = (
            f"{defense} leaks at every tested noise ({noises}): the attack's mean PSNR stayed more than "
            f"{LEAK_MARGIN_DB:g} dB above {smallest.reference[0]}, so the update gives at least "
            f"{smallest.leakage_gap_db:+.1f} dB over it (smallest gap, at σ = {fmt_noise(smallest.noise)})."
        )
    elif not leaking:
        first = judged[0]
        text = (
            f"{defense}: at every tested noise ({noises}) this attack rebuilt no more than the guess: "
            f"its mean PSNR never exceeded {first.reference[0]} by more than {LEAK_MARGIN_DB:g} dB "
            f"(a lower bound on leakage: a stronger attack may rebuild more); at the smallest, "
            f"σ = {fmt_noise(first.noise)} ({fmt_privacy(first)}), Dice changes by "
            f"{fmt_dice_change(first)} vs undefended."
        )
    elif judged[-1].leaks:
        text = (
            f"{defense}: leakage does not stop within the tested noises: it leaks at σ = "
            f"{', '.join(fmt_noise(s.noise) for s in leaking)}; at σ = "
            f"{', '.join(fmt_noise(s.noise) for s in judged if not s.leaks)} this attack rebuilt no more "
            "than the guess."
        )
    else:
        stop = next(s for i, s in enumerate(judged) if not any(t.leaks for t in judged[i:]))
        text = (
            f"{defense}: from σ = {fmt_noise(stop.noise)} ({fmt_privacy(stop)}) this attack rebuilt no more "
            f"than the guess: mean PSNR {stop.mean('psnr'):.1f} dB is at most {LEAK_MARGIN_DB:g} dB above "
            f"{stop.reference[0]}'s {stop.reference[1]:.1f} dB, and Dice changes by "
            f"{fmt_dice_change(stop)} vs undefended."
        )
    card = defense_card(defense)
    if card is not None and card.caveat:
        text += f" ({defense} {card.caveat}.)"
    return text


def _leak_phrase(s: SettingSummary) -> str:
    gap = s.leakage_gap_db
    if gap is None:
        return "the attack could not be judged (no PSNR or prior PSNR)"
    (name, prior), psnr = s.reference, s.mean("psnr")
    if s.leaks:
        return (
            f"the update leaks: at least {gap:+.1f} dB over {name} "
            f"(the attack's mean PSNR {psnr:.1f} dB vs {prior:.1f} dB)"
        )
    return (
        f"this attack rebuilt no more than the guess: mean PSNR {psnr:.1f} dB vs {prior:.1f} dB for "
        f"{name} ({gap:+.1f} dB; a lower bound on leakage, not a proof of none)"
    )


def _noise_range(settings: Sequence[SettingSummary]) -> str:
    low, high = settings[0].noise, settings[-1].noise
    return f"σ = {fmt_noise(low)}" if low == high else f"σ = {fmt_noise(low)} to {fmt_noise(high)}"


def mask_prior_note(summaries: Sequence[SettingSummary]) -> str | None:
    """When masks were known: say that the verdicts read leakage against the mask-painted prior."""
    value = stat(s.mean("mask_prior_psnr") for s in summaries).mean
    if value is None:
        return None
    prior = stat(s.mean("prior_psnr") for s in summaries).mean
    versus = f"; the site's mean colour alone scores {prior:.1f} dB" if prior is not None else ""
    text = (
        "The attacker knew the true masks, so before reading any update it could already paint them in "
        f"the site's public nuclei and background colours: that guess scores a mean PSNR of {value:.1f} dB"
        f"{versus}. The verdicts count as leakage only what the update adds on top of the painted masks."
    )
    return " ".join([text, *_mean_colour_readings(summaries)])


def _mean_colour_readings(summaries: Sequence[SettingSummary]) -> list[str]:
    """Against the site's mean colour instead (a guess that uses neither masks nor update): how far
    the undefended attack gets above it, and from which σ each defense brings it back within
    :data:`LEAK_MARGIN_DB` — what DP removes of the picture the update and the masks together give."""

    def gap(s: SettingSummary) -> float | None:
        psnr, prior = s.mean("psnr"), s.mean("prior_psnr")
        return None if psnr is None or prior is None else psnr - prior

    sentences = []
    attacks = list(dict.fromkeys(s.attack for s in summaries))
    for attack in attacks:
        prefix = f"[{attack}] " if len(attacks) > 1 else ""
        mine = [s for s in summaries if s.attack == attack and gap(s) is not None]
        for s in mine:
            if s.defense == "none":
                sentences.append(
                    f"{prefix}Read against the site's mean colour instead, the undefended attack is "
                    f"{gap(s):+.1f} dB above it."
                )
        for defense in dict.fromkeys(s.defense for s in mine if s.defense != "none"):
            settings = sorted((s for s in mine if s.defense == defense), key=lambda s: s.noise)
            close = [(gap(s) or 0.0) <= LEAK_MARGIN_DB for s in settings]
            start = next((i for i in range(len(settings)) if all(close[i:])), None)
            if start is None:
                worst = min(settings, key=lambda s: gap(s) or 0.0)
                sentences.append(
                    f"{prefix}{defense} keeps it more than {LEAK_MARGIN_DB:g} dB above the mean colour "
                    f"at the highest tested σ (smallest gap {gap(worst):+.1f} dB at "
                    f"σ = {fmt_noise(worst.noise)})."
                )
            else:
                s = settings[start]
                sentences.append(
                    f"{prefix}{defense} brings it within {LEAK_MARGIN_DB:g} dB of the mean colour from "
                    f"σ = {fmt_noise(s.noise)} ({fmt_privacy(s)}; Dice {fmt_dice_change(s)})."
                )
    return sentences
