"""The known-leak yardstick printed beside the honest server's verdicts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from reports.attack_strength import known_leaks, strength_sentence


def test_a_weak_attack_is_called_weak_on_the_textbook_leak() -> None:
    known = known_leaks()["inverting-gradients"]
    sentence = strength_sentence("inverting-gradients")
    assert sentence is not None
    assert f"({known.margin_db:+.1f} dB;" in sentence and known.command in sentence
    # Below the guess where leakage is known: the sentence must say the attack, not the setting, is weak.
    assert known.margin_db <= 1.0 and "this attack is weak, not that the setting is safe" in sentence


def test_an_attack_that_beats_the_guess_there_is_read_as_such() -> None:
    known = known_leaks()["learned-inversion"]
    sentence = strength_sentence("learned-inversion")
    assert sentence is not None and known.margin_db > 1.0
    assert f"({known.margin_db:+.1f} dB;" in sentence and "read against that strength" in sentence
    assert "this attack is weak" not in sentence


def test_an_attack_without_a_measurement_gets_no_sentence() -> None:
    assert strength_sentence("dlg") is None


def test_the_known_leak_was_measured_with_todays_defaults() -> None:
    """The yardstick is a stored measurement: when the attack's defaults change, re-measure it (the
    command is in the attack's ``known_leak``) and update its settings, or this fails."""
    from dataclasses import asdict

    from attacks import ATTACKS

    measured = known_leaks()
    assert "inverting-gradients" in measured  # the default attack's yardstick is declared, not lost
    for name, known in measured.items():
        assert asdict(ATTACKS.get(name).Config()) == known.settings, name


def test_the_smooth_network_measurement_stands_beside_the_relu_one() -> None:
    """The default attack beats the guess through a GELU U-Net (the same tile, command and guess), so
    the sentence must say the ReLU network, not only the attack, is what holds it at the guess."""
    known = known_leaks()["inverting-gradients"]
    sentence = strength_sentence("inverting-gradients")
    assert sentence is not None and known.smooth_margin_db is not None
    assert known.smooth_margin_db > 1.0 >= known.margin_db
    assert f"({known.smooth_margin_db:+.1f} dB;" in sentence and 'activation = "gelu"' in sentence
    assert "On a ReLU U-Net it does not beat the guess" in sentence


def test_the_attack_table_prints_the_sentence_verbatim() -> None:
    """The sentence quotes a TOML section (`[model]`); the table must not read it as rich markup."""
    from rich.console import Console

    from feddp_eval.cli.attack_table import _notes
    from feddp_eval.result_row import ResultRow

    row = ResultRow(attack="inverting-gradients", threat="honest", prior_kind="painted-mask")
    console = Console(record=True, width=10_000)
    for line in _notes(row, {"threat": "honest-but-curious server"}, "grid.png"):
        console.print(line)
    assert strength_sentence("inverting-gradients") in console.export_text()


def test_what_the_update_holds_stands_beside_the_verdict() -> None:
    """With the true tile's activation pattern given (an oracle), the same update rebuilds the tile far
    above the guess: the sentence must say the update leaks, that this is no attack, and how it was
    measured."""
    known = known_leaks()["inverting-gradients"]
    sentence = strength_sentence("inverting-gradients")
    assert sentence is not None and known.pattern_margin_db is not None
    assert known.pattern_margin_db > 1.0
    assert f"({known.pattern_margin_db:+.1f} dB;" in sentence and "an oracle, not an attack" in sentence
    assert known.pattern_command is not None and known.pattern_command in sentence
    assert "this attack does not find that pattern" in sentence


def test_no_pattern_measurement_no_pattern_clause(monkeypatch: pytest.MonkeyPatch) -> None:
    from reports import attack_strength

    known = replace(known_leaks()["inverting-gradients"], pattern_psnr=None, pattern_ssim=None)
    monkeypatch.setattr(attack_strength, "known_leaks", lambda: {"inverting-gradients": known})
    sentence = attack_strength.strength_sentence("inverting-gradients")
    assert sentence is not None and "activation pattern" not in sentence
