"""The results row of one attack, its leakage read against the attacker's prior, and the threat text.

Every key of a row is a column of :mod:`feddp_eval.schema`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feddp_eval.rundir.summary import TrainSummary

EXACT_PSNR = 40.0  # dB: a tile recovered at or above this is, to the eye, the tile itself


def leakage_reading(scores: Any, reference_scores: Any, *, reference: str) -> dict[str, Any]:
    """Leakage read against the strongest guess the attacker holds without the update.

    Args:
        scores: :class:`~feddp_eval.metrics.privacy.ReconstructionScores` of the reconstruction.
        reference_scores: The same scores of that guess (the prior columns of the row).
        reference: Its name, ``painted-mask``, ``mean-colour`` or ``own-guess``.

    Returns:
        ``prior_kind``; ``margin_psnr`` / ``margin_ssim``: PSNR (pooled MSE) / mean SSIM minus the
        reference's;
        ``tiles_beating_prior``: matched tiles whose PSNR beats the reference guess of that tile;
        ``tiles_exact``: matched tiles at PSNR >= 40 dB.
    """
    guess = dict(zip(reference_scores.truth_index, reference_scores.psnr_per_pair, strict=True))
    pairs = list(zip(scores.truth_index, scores.psnr_per_pair, strict=True))
    return {
        "prior_kind": reference,
        "margin_psnr": scores.psnr - reference_scores.psnr,
        "margin_ssim": scores.ssim - reference_scores.ssim,
        "tiles_beating_prior": sum(1 for t, value in pairs if value > guess[t]),
        "tiles_exact": sum(1 for _, value in pairs if value >= EXACT_PSNR),
    }


def imprint_facts(capture: Any, truth: Any, recon: Any) -> dict[str, Any]:
    """How many true tiles were alone in an imprint slot (scoring side), and how many the attack read."""
    from collections import Counter

    from attacks.imprint import slot_of

    thresholds = capture.metadata.get("model", {}).get("thresholds", [])
    slots = Counter(slot_of(float(b), thresholds) for b in truth.images.mean(dim=(1, 2, 3)))
    return {
        "tiles_alone": sum(1 for slot, count in slots.items() if count == 1 and slot >= 0),
        "tiles_read": recon.details.get("tiles_read"),
    }


def scores_columns(
    scores: Any, baseline: Any, mask_baseline: Any, *, mask_scored: bool, own_guess: Any = None
) -> dict[str, Any]:
    """The leakage and prior columns: the reconstruction's scores, the mean-colour prior's and, with
    the masks known, the painted-mask prior's; leakage read against the stronger of the priors. An
    attack that holds a guess of its own without the update (``own_guess``: a learned attack's, from
    its public tiles) holds the view's prior too (the painted-mask guess, or the mean colour with the
    masks unknown), so its leakage is read against the stronger (higher PSNR) of the two: public
    tiles of another look can give a guess below the prior."""
    if mask_baseline is not None:
        reference, reference_scores = "painted-mask", mask_baseline
    else:
        reference, reference_scores = "mean-colour", baseline
    if own_guess is not None and own_guess.psnr >= reference_scores.psnr:
        reference, reference_scores = "own-guess", own_guess
    return {
        "psnr": scores.psnr,
        "psnr_median": scores.psnr_median,
        "share_30db": scores.share_30db,
        "share_40db": scores.share_40db,
        "ssim": scores.ssim,
        "lpips": scores.lpips,
        # A given mask scores nothing; an imprint recovers no mask.
        "mask_dice": scores.mask_dice if mask_scored else None,
        "prior_psnr": baseline.psnr,
        "prior_ssim": baseline.ssim,
        "prior_lpips": baseline.lpips,
        "prior_mask_dice": baseline.mask_dice if mask_scored else None,
        "mask_prior_psnr": mask_baseline.psnr if mask_baseline else None,
        "mask_prior_ssim": mask_baseline.ssim if mask_baseline else None,
        "mask_prior_lpips": mask_baseline.lpips if mask_baseline else None,
        "own_guess_psnr": own_guess.psnr if own_guess is not None else None,
        "own_guess_ssim": own_guess.ssim if own_guess is not None else None,
        **leakage_reading(scores, reference_scores, reference=reference),
    }


def training_columns(config: Any, summary: TrainSummary) -> dict[str, Any]:
    """The setting, privacy and utility columns of a training run: ``noise`` is the σ the defense
    applied (the one ``target_epsilon`` calibrated, when it was given); the audit's, when it ran."""
    applied = summary.noise_multiplier
    return {
        "defense": config.defense.name,
        "noise": config.defense.noise if applied is None else applied,
        "epsilon": summary.epsilon,
        "delta": summary.delta,
        "granularity": summary.granularity,
        "accountant": summary.accountant,
        "dice": summary.dice,
        "jaccard": summary.jaccard,
        "accuracy": summary.accuracy,
        "otsu_dice": summary.otsu_dice,
        **audit_columns(summary.audit),
    }


AUDIT_COLUMNS = ("epsilon_lower_bound", "audit_canaries", "audit_guesses", "audit_correct", "audit_violated")


def audit_columns(audit: dict[str, Any] | None) -> dict[str, Any]:
    """ε̂ and its counts from a run's audit record (``privacy.json``'s ``audit``); empty cells without one."""
    if audit is None:
        return dict.fromkeys(AUDIT_COLUMNS)
    return {
        "epsilon_lower_bound": audit["epsilon_lower_bound"],
        "audit_canaries": audit["canaries_total"],
        "audit_guesses": audit["guesses"],
        "audit_correct": audit["correct"],
        "audit_violated": int(bool(audit["violated"])),
    }


def attack_columns(config: Any, recon: Any, *, malicious: bool, restarts: int, rounds: int) -> dict[str, Any]:
    """What ran and how it stopped."""
    return {
        "threat": "malicious" if malicious else "honest",
        "attack": config.attack.name,
        "iterations": recon.iterations,
        "restarts": restarts,
        "rounds_used": rounds,
        "seconds": round(recon.seconds, 2),
        "stopped": recon.stopped,
        "objective": recon.objective if math.isfinite(recon.objective) else None,
    }


def threat_text(attack: Any, mask: str, rounds: list[int] | None = None) -> str:
    """The threat model in force, in words, for tables and reports (``rounds``: inverted jointly)."""
    from attacks import Attack

    if attack.threat != Attack.threat:
        return (
            f"{attack.threat}; the target trains it with its own loss, optimizer and defense; "
            "sees the released update; needs no mask"
        )
    return (
        "honest-but-curious server; sees each client's released update; knows architecture, "
        "global weights, loss and local hyper-parameters"
        + (
            "; knows the true masks (the most it could know; what it rebuilds is a lower bound on leakage)"
            if mask == "known"
            else "; recovers the masks jointly with the images"
        )
        + (
            f"; keeps the site's updates of rounds {rounds} and inverts them jointly, telling tiles "
            "apart across rounds by the recorded sample indices"
            if rounds
            else ""
        )
        + _public_tiles_text(attack)
    )


def _public_tiles_text(attack: Any) -> str:
    """What public tiles the server holds for an attack that learns from them ("" when none)."""
    if not (n := attack.public_tiles_wanted()):
        return ""
    return f"; holds {n:,} public tiles {attack.public_description()} and simulates a client's round on each"
