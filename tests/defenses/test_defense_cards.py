"""What each defense declares about itself reaches the core (:mod:`feddp_eval.plugins`) as it registers.

The report and the sweep read a defense's colour, marker, order, sentence and granularity from its
card, never from a list of names of their own; these tests hold the cards to the classes and to what
a reader needs (every series told apart, the undefended reference first).
"""

from __future__ import annotations

import pytest

from defenses import DEFENSES
from defenses.base import card
from feddp_eval import plugins
from feddp_eval.errors import ConfigError


@pytest.mark.parametrize("name", DEFENSES.names())
def test_every_registered_defense_files_the_card_its_class_declares(name: str) -> None:
    filed = plugins.defense_card(name)
    assert filed == card(DEFENSES.get(name))
    assert filed is not None and filed.name == name


def test_declared_colours_markers_and_orders_tell_the_defenses_apart() -> None:
    cards = plugins.defense_cards()
    for field in ("colour", "marker", "order"):
        declared = [getattr(c, field) for c in cards if getattr(c, field) is not None]
        assert len(declared) == len(set(declared)), f"two defenses declare the same {field}: {declared}"
    ordered = sorted((c for c in cards if c.order is not None), key=lambda c: c.order or 0)
    assert ordered[0].granularity == "none" and not ordered[0].protects_against_server  # the reference


def test_a_defense_that_leaves_the_server_in_says_so_in_its_verdict() -> None:
    """A defense that does not keep the capturing server out and still claims a guarantee must add a
    caveat to its verdict, or the report would read its guarantee as protection against the server."""
    for c in plugins.defense_cards():
        if not c.protects_against_server and c.granularity != "none":
            assert c.caveat, f"{c.name} does not protect against the server but declares no caveat"


def test_an_unregistered_name_has_no_card() -> None:
    assert plugins.defense_card("no-such-defense") is None


def test_reading_cards_before_any_defense_is_loaded_says_what_to_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(plugins, "_DEFENSES", {})
    with pytest.raises(ConfigError, match="`import defenses`"):
        plugins.defense_card("none")
