"""Aggregation, formatting and verdicts of the summary, against hand-computed numpy values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from feddp_eval.schema import three_digits
from reports import load_results
from reports.curves import pareto_front
from reports.summary import (
    Stat,
    fmt_change,
    fmt_dice_change,
    fmt_epsilon,
    fmt_stat,
    summarize,
    table,
    utility_columns,
)
from reports.verdicts import mask_prior_note, verdicts

METRICS = (
    "dice",
    "jaccard",
    "accuracy",
    "psnr",
    "ssim",
    "lpips",
    "prior_psnr",
    "prior_ssim",
    "mask_prior_psnr",
)


def test_summary_aggregates_means_sd_and_dice_change(synthetic_sweep: Any) -> None:
    summaries = summarize(load_results(synthetic_sweep.root).rows)
    assert [(s.defense, s.noise) for s in summaries] == [
        ("none", 0.0),
        ("dp-sgd", 0.01),
        ("dp-sgd", 0.1),
        ("dp-sgd", 1.0),
        ("local-dp", 0.01),
        ("local-dp", 0.1),
        ("local-dp", 1.0),
    ]
    dice_none = np.mean([r["dice"] for r in synthetic_sweep.rows_of("none", 0.0)])
    for s in summaries:
        rows = synthetic_sweep.rows_of(s.defense, s.noise)
        assert s.n == len(rows) == 2
        for metric in METRICS:
            values = np.array([r[metric] for r in rows])
            assert s.stats[metric].mean == pytest.approx(values.mean(), abs=1e-12)
            assert s.stats[metric].sd == pytest.approx(values.std(ddof=1), abs=1e-12)
        assert s.stats["mask_dice"].mean is None  # mask known: never scored
        dice = np.mean([r["dice"] for r in rows])
        assert s.dice_change_pct == pytest.approx(100 * (dice - dice_none) / dice_none, abs=1e-9)
        if s.defense == "none":
            assert s.epsilon is None and s.dice_change_pct == 0.0
        else:
            assert s.epsilon == pytest.approx(np.mean([r["epsilon"] for r in rows]))
            assert (s.delta, s.accountant) == (1e-5, "rdp")
            assert s.granularity == ("sample" if s.defense == "dp-sgd" else "client")


def test_single_seed_has_plain_mean_and_no_sd(sweep_factory: Any) -> None:
    sweep = sweep_factory(defenses=("dp-sgd",), seeds=(3,))
    s = summarize(load_results(sweep.root).rows)[1]
    assert (s.n, s.stats["dice"].sd) == (1, None)
    assert fmt_stat(s.stats["dice"], 3) == f"{sweep.rows_of('dp-sgd', 0.01)[0]['dice']:.3f}"


def test_formats() -> None:
    assert fmt_stat(Stat(0.81234, 0.00412, 2), 3) == "0.812 ± 0.004"
    assert fmt_stat(Stat(18.249, None, 1), 1) == "18.2"
    assert fmt_stat(Stat(None, None, 0), 3) == "—"
    assert (fmt_change(-2.06), fmt_change(0.0), fmt_change(3.14), fmt_change(None)) == (
        "-2.1%",
        "+0.0%",
        "+3.1%",
        "—",
    )
    rows = [_row("none", 0.0, 20.0, 14.0, 0.8), _row("dp-sgd", 0.5, 14.0, 14.0, 0.7, epsilon=12345.6)]
    none, dp = summarize(rows)
    assert (fmt_epsilon(none), fmt_epsilon(dp)) == ("∞", "1.23e+04")
    assert [three_digits(v) for v in (2000.0, 666.67, 66.667, 1.8234, 0.004567)] == [
        "2.00e+03",
        "667",
        "66.7",
        "1.82",
        "4.57e-03",
    ]
    assert fmt_change(-0.04) == "+0.0%"


def _row(defense: str, noise: float, psnr: float, prior: float, dice: float, **extra: Any) -> dict[str, Any]:
    base = {
        "defense": defense,
        "noise": noise,
        "psnr": psnr,
        "prior_psnr": prior,
        "dice": dice,
        "attack": "inverting-gradients",
        "epsilon": None if defense == "none" else 10.0 / max(noise, 1e-9),
        "delta": None if defense == "none" else 1e-5,
        "granularity": None if defense == "none" else "sample",
        "accountant": "rdp",
    }
    return {**base, **extra}


def _constructed(defense: str, gaps: dict[float, float]) -> list[dict[str, Any]]:
    """Undefended reference (Dice 0.8) plus one row per noise with the given PSNR gap over a 14 dB prior."""
    rows = [_row("none", 0.0, 22.0, 14.0, 0.8)]
    rows += [_row(defense, noise, 14.0 + gap, 14.0, 0.8 - 0.2 * noise) for noise, gap in gaps.items()]
    return rows


def test_verdict_names_the_noise_where_leakage_stops() -> None:
    # leaks at σ ≤ 0.01 (gaps 6 and 3 dB), stops at 0.03 (0.5 dB) and stays stopped at 0.1
    rows = _constructed("dp-sgd", {0.001: 6.0, 0.01: 3.0, 0.03: 0.5, 0.1: 0.2})
    none, dp = verdicts(summarize(rows))
    assert none == (
        "Without a defense the update leaks: at least +8.0 dB over the mean-colour prior (the attack's "
        "mean PSNR 22.0 dB vs 14.0 dB)."
    )
    change = 100 * ((0.8 - 0.2 * 0.03) - 0.8) / 0.8
    assert dp == (
        "dp-sgd: from σ = 0.03 (ε = 333, δ = 1e-05, sample-level, rdp) this attack rebuilt no more than "
        "the guess: mean PSNR 14.5 dB is at most "
        f"1 dB above the mean-colour prior's 14.0 dB, and Dice changes by {change:+.1f}% "
        "(1 seed: cannot tell) vs undefended."
    )
    assert f"{change:+.1f}%" == "-0.8%"


def test_verdict_leaks_everywhere_never_and_inconsistently() -> None:
    everywhere = verdicts(summarize(_constructed("local-dp", {0.1: 5.0, 1.0: 1.5})))[1]
    assert everywhere == (
        "local-dp leaks at every tested noise (σ = 0.1 to 1): the attack's mean PSNR stayed more than 1 dB "
        "above the mean-colour prior, so the update gives at least +1.5 dB over it (smallest gap, at σ = 1)."
    )
    never = verdicts(summarize(_constructed("dp-sgd", {0.5: 0.9, 2.0: -0.5})))[1]
    assert never.startswith(
        "dp-sgd: at every tested noise (σ = 0.5 to 2) this attack rebuilt no more than the guess"
    )
    assert "a lower bound on leakage" in never
    assert (
        "at the smallest, σ = 0.5 (ε = 20, δ = 1e-05, sample-level, rdp), Dice changes by -12.5% "
        "(1 seed: cannot tell) vs undefended" in never
    )
    mixed = verdicts(summarize(_constructed("dp-sgd", {0.1: 0.5, 1.0: 2.0})))[1]
    assert (
        mixed == "dp-sgd: leakage does not stop within the tested noises: it leaks at σ = 1; at σ = 0.1 this "
        "attack rebuilt no more than the guess."
    )
    central = verdicts(summarize(_constructed("central-dp", {1.0: 8.0})))[1]
    assert (
        central.startswith("central-dp leaks at every tested noise")
        and "not expected to stop a curious server" in central
    )


def test_leak_rule_is_strictly_more_than_one_db() -> None:
    exactly, above = summarize(_constructed("dp-sgd", {0.1: 1.0, 0.2: 1.0001}))[1:]
    assert (exactly.leaks, above.leaks) == (False, True)


def test_missing_reference_leaves_dice_change_empty() -> None:
    (s,) = summarize([_row("dp-sgd", 1.0, 15.0, 14.0, 0.7)])
    assert s.dice_change_pct is None and fmt_change(s.dice_change_pct) == "—"


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(20.0, 0.80), (15.0, 0.75), (16.0, 0.70), (14.0, 0.60), (18.0, 0.80), (14.0, 0.55)]
    assert pareto_front(points) == [(14.0, 0.60), (15.0, 0.75), (18.0, 0.80)]
    assert math.isclose(sum(d for _, d in pareto_front(points)), 2.15)


def test_several_attacks_are_kept_apart() -> None:
    rows = _constructed("dp-sgd", {0.1: 0.5}) + [
        {**r, "attack": "dlg", "psnr": r["psnr"] + 5.0} for r in _constructed("dp-sgd", {0.1: 0.5})
    ]
    summaries = summarize(rows)
    assert [(s.attack, s.defense) for s in summaries] == [
        ("dlg", "none"),
        ("dlg", "dp-sgd"),
        ("inverting-gradients", "none"),
        ("inverting-gradients", "dp-sgd"),
    ]
    headers, cells = table(summaries, utility_columns())
    assert headers[0] == "attack" and cells[1][:3] == ["dlg", "dp-sgd", "0.1"]
    sentences = verdicts(summaries)
    assert sentences[1].startswith("[honest server · dlg] dp-sgd leaks at every tested noise")
    assert sentences[3].startswith(
        "[honest server · inverting-gradients] dp-sgd: at every tested noise (σ = 0.1) this attack rebuilt "
        "no more than the guess"
    )


def test_with_masks_known_leakage_is_read_against_the_mask_painted_prior() -> None:
    rows = [
        _row("none", 0.0, 22.0, 14.0, 0.8, mask_prior_psnr=21.5),
        _row("dp-sgd", 1.0, 14.5, 14.0, 0.7, mask_prior_psnr=21.5),
    ]
    summaries = summarize(rows)
    # 8 dB above the mean colour, but only 0.5 dB above the painted masks: no leakage beyond the masks
    assert summaries[0].leakage_gap_db == pytest.approx(0.5) and summaries[0].leaks is False
    none, dp = verdicts(summaries)
    assert none == (
        "Without a defense this attack rebuilt no more than the guess: mean PSNR 22.0 dB vs 21.5 dB for "
        "the mask-painted prior (+0.5 dB; a lower bound on leakage, not a proof of none)."
    )
    assert dp.startswith("dp-sgd: at every tested noise") and "never exceeded the mask-painted prior" in dp
    note = mask_prior_note(summaries)
    assert note is not None
    assert "that guess scores a mean PSNR of 21.5 dB; the site's mean colour alone scores 14.0 dB" in note
    assert mask_prior_note(summarize([_row("none", 0.0, 22.0, 14.0, 0.8)])) is None


def test_with_masks_known_the_note_also_reads_leakage_against_the_mean_colour() -> None:
    rows = [
        _row("none", 0.0, 22.0, 14.0, 0.8, mask_prior_psnr=21.5),
        _row("dp-sgd", 0.1, 18.0, 14.0, 0.8, mask_prior_psnr=21.5),
        _row("dp-sgd", 1.0, 14.5, 14.0, 0.72, mask_prior_psnr=21.5),
        _row("local-dp", 1.0, 16.0, 14.0, 0.4, mask_prior_psnr=21.5),
    ]
    note = mask_prior_note(summarize(rows))
    assert note is not None
    assert "Read against the site's mean colour instead, the undefended attack is +8.0 dB above it." in note
    assert (
        "dp-sgd brings it within 1 dB of the mean colour from σ = 1 (ε = 10, δ = 1e-05, sample-level, rdp; "
        "Dice -10.0% (1 seed: cannot tell))." in note
    )
    assert (
        "local-dp keeps it more than 1 dB above the mean colour at the highest tested σ (smallest gap "
        "+2.0 dB at σ = 1)." in note
    )


def test_threat_models_get_their_own_sections_and_labelled_verdicts() -> None:
    from reports.build import threat_sections

    def row(attack: str, defense: str, noise: float, psnr: float, threat: str | None) -> dict:
        return {
            "attack": attack,
            "defense": defense,
            "noise": noise,
            "dice": 0.8,
            "psnr": psnr,
            "prior_psnr": 17.0,
            "threat": threat,
        }

    rows = [
        row("inverting-gradients", "none", 0.0, 19.0, None),  # written before threats were recorded
        row("inverting-gradients", "dp-sgd", 1.1, 17.2, "honest"),
        row("imprint", "none", 0.0, 140.0, "malicious"),
        row("imprint", "dp-sgd", 1.1, 17.0, "malicious"),
    ]
    summaries = summarize(rows)
    sections = threat_sections(summaries, rows)
    assert [(title, {s.attack for s in mine}, len(r)) for title, mine, r in sections] == [
        ("Honest-but-curious server", {"inverting-gradients"}, 2),
        ("Malicious server", {"imprint"}, 2),
    ]
    sentences = verdicts(summaries)
    assert sentences[0].startswith(
        "[malicious server · imprint] Without a defense the update leaks: at least"
    )
    assert any(
        s.startswith("[honest server · inverting-gradients] dp-sgd: at every tested noise") for s in sentences
    )


def test_a_dice_change_is_flagged_when_it_is_within_seed_noise() -> None:
    """Three seeds that disagree in sign: the mean change is not read as an effect; three that agree are."""
    rows = []
    for seed, (undefended, noisy, clear) in enumerate(
        [(0.80, 0.805, 0.70), (0.82, 0.812, 0.71), (0.81, 0.811, 0.72)]
    ):
        rows += [
            {**_row("none", 0.0, 20.0, 14.0, undefended), "seed": seed},
            {**_row("dp-sgd", 0.1, 15.0, 14.0, noisy), "seed": seed},
            {**_row("dp-sgd", 1.0, 14.0, 14.0, clear), "seed": seed},
        ]
    none, within, lower = summarize(rows)
    assert none.dice_change is None
    assert within.dice_change is not None and within.dice_change.verdict == "within noise"
    assert lower.dice_change is not None and lower.dice_change.verdict == "lower"
    assert fmt_dice_change(within).endswith("(within seed noise, 3 seeds)")
    assert fmt_dice_change(lower).endswith("(lower, 3 seeds)")
    # The interval is the paired t interval of scipy on the per-seed ratios.
    from scipy import stats

    ratios = [0.805 / 0.80 - 1, 0.812 / 0.82 - 1, 0.811 / 0.81 - 1]
    low, high = stats.t.interval(0.95, 2, loc=sum(ratios) / 3, scale=stats.sem(ratios))
    assert (within.dice_change.low, within.dice_change.high) == pytest.approx((low, high), rel=1e-9)
