"""How strong an honest-server attack is where leakage is known: the yardstick beside its verdicts.

An attack's success is a lower bound on what its attacker could rebuild. "This attack rebuilt no
more than the guess" therefore says as much about the attack as about the setting, unless the reader
also sees what the same attack does on a case that is known to leak: one tile, one local step, masks
known, no defense, the textbook leak (Geiping et al. 2020; Hatamizadeh et al. 2023), where the true
tile matches the update to |1 − cos| < 1e-4. Where the attack is weak there, the same measurement
through a U-Net with smooth activations (when declared) shows whether the attack or the network's
ReLUs are what stop it, and the same update inverted with the true tile's activation pattern given
(an oracle, when declared) shows how much of the tile the update itself holds. These are reference
measurements of the default attack on the default scenario's data, with the command that made them;
they are not computed from the run being reported, and are re-measured whenever the attack changes
(``docs/guides/honest-server.md``).
Each attack declares its own measurement (``Attack.known_leak``, filed on its card in
:mod:`feddp_eval.plugins`); the report reads it by the attack's name.
"""

from __future__ import annotations

from collections.abc import Sequence

from feddp_eval.plugins import KnownLeak, attack_cards
from reports.summary import SettingSummary

__all__ = ["KnownLeak", "known_leaks", "strength_sentence", "strength_sentences"]


def known_leaks() -> dict[str, KnownLeak]:
    """Each attack's declared measurement on the textbook leak, by attack name (an error when no attack
    plugin is loaded: ``import attacks`` first, as the CLI does)."""
    return {card.name: card.known_leak for card in attack_cards() if card.known_leak is not None}


def strength_sentence(attack: str) -> str | None:
    """The sentence a report or table prints beside an honest-server verdict, or ``None`` when the
    attack has no known-leak measurement."""
    known = known_leaks().get(attack)
    if known is None:
        return None
    weak = known.margin_db <= 1.0
    smooth = known.smooth_margin_db
    contrast = (
        f" Through a U-Net with smooth (GELU) activations the same attack rebuilt {known.smooth_psnr:.1f} "
        f"dB / SSIM {known.smooth_ssim:.2f} of the same tile ({smooth:+.1f} dB; {known.smooth_command}): "
        "a ReLU network's update jumps where an activation switches, and this attack cannot follow the "
        "jumps."
        if smooth is not None and smooth > 1.0
        else ""
    )
    held = known.pattern_margin_db
    holds = (
        f" The update itself holds this tile: given the network's activation pattern at the true tile "
        f"(every ReLU gate and max-pool winner; an oracle, not an attack), L-BFGS on the same update from "
        f"the same guess rebuilds {known.pattern_psnr:.1f} dB / SSIM {known.pattern_ssim:.2f} "
        f"({held:+.1f} dB; {known.pattern_command}); this attack does not find that pattern."
        if held is not None and held > 1.0
        else ""
    )
    return (
        f"How strong this attack is: on the textbook leak (one tile, one local step, masks known, no "
        f"defense) its {known.recipe} recipe rebuilt {known.psnr:.1f} dB / SSIM {known.ssim:.2f} against "
        f"{known.guess_psnr:.1f} dB / {known.guess_ssim:.2f} for the painted-mask guess "
        f"({known.margin_db:+.1f} dB; `{known.command}`)."
        + contrast
        + holds
        + (
            (" On a ReLU U-Net it" if contrast else " It")
            + " does not beat the guess even where the update is known to leak, so a verdict of "
            "'rebuilt no more than the guess' there says this attack is weak, not that the setting is safe."
            if weak
            else " A verdict of 'rebuilt no more than the guess' is read against that strength."
        )
    )


def strength_sentences(summaries: Sequence[SettingSummary]) -> list[str]:
    """One :func:`strength_sentence` per honest-server attack in ``summaries`` that has a measurement."""
    attacks = dict.fromkeys(s.attack for s in summaries if s.threat == "honest")
    return [sentence for a in attacks if (sentence := strength_sentence(a)) is not None]
