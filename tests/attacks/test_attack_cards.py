"""What each attack declares about itself reaches the core (:mod:`feddp_eval.plugins`) as it registers.

The config hash, validation and the sweep read whether an attack modifies the model the server sends,
and which recipes it has, from its card, never from a list of names of their own.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from attacks import ATTACKS
from attacks.base import card
from feddp_eval import plugins
from feddp_eval.config import AttackSettings, ExperimentConfig, config_hash, server_modification, validate
from feddp_eval.errors import ConfigError


@pytest.mark.parametrize("name", ATTACKS.names())
def test_every_registered_attack_files_the_card_its_class_declares(name: str) -> None:
    filed = plugins.attack_card(name)
    cls = ATTACKS.get(name)
    assert filed == card(cls)
    assert filed is not None and filed.name == name and "default" in filed.recipes
    assert set(filed.recipes) == set(cls.recipes)
    for _, setting in filed.modification_settings:  # each names a real [attack] setting
        assert hasattr(AttackSettings(), setting), setting


def test_the_imprint_attack_declares_its_modification_and_the_hash_reads_it() -> None:
    config = ExperimentConfig(attack=AttackSettings(name="imprint", target_round=2, imprint_bins=16))
    assert plugins.modifies_model("imprint") and not plugins.modifies_model("inverting-gradients")
    assert server_modification(config) == {
        "modification": "imprint",
        "site": -1,
        "round": 2,
        "bins": 16,
        "gain": 1e4,
    }
    assert server_modification(ExperimentConfig()) is None
    assert not plugins.modifies_model("no-such-attack")


def test_hashing_before_any_attack_is_loaded_says_what_to_import_never_hashes_as_honest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(plugins, "_ATTACKS", {})
    for name in ("imprint", "inverting-gradients"):
        with pytest.raises(ConfigError, match="`import attacks`"):
            config_hash(ExperimentConfig(attack=AttackSettings(name=name)))


def test_validating_a_recipe_or_all_rounds_without_the_plugins_is_a_problem_not_a_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(plugins, "_ATTACKS", {})
    validate(ExperimentConfig())  # the defaults need no plugin
    for attack in (AttackSettings(recipe="paper"), AttackSettings(name="imprint", target_round="all")):
        with pytest.raises(ConfigError, match="`import attacks`"):
            validate(ExperimentConfig(attack=attack))


def test_a_recipe_is_one_its_attack_declares() -> None:
    validate(ExperimentConfig(attack=AttackSettings(name="inverting-gradients", recipe="paper")))
    with pytest.raises(ConfigError, match=r"exists for inverting-gradients only.*pick --attack inverting-"):
        validate(ExperimentConfig(attack=AttackSettings(name="dlg", recipe="paper")))


def test_a_fresh_process_without_the_attack_plugins_refuses_to_hash() -> None:
    code = (
        "from feddp_eval.config import ExperimentConfig, config_hash\n"
        "from feddp_eval.errors import ConfigError\n"
        "try:\n"
        "    config_hash(ExperimentConfig())\n"
        "except ConfigError as exc:\n"
        "    print(exc); raise SystemExit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3 and "`import attacks`" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("name", ATTACKS.names())
def test_an_attack_builds_a_server_exactly_when_its_card_says_it_modifies_the_model(name: str) -> None:
    """The config hash reads the card, training runs the server the attack builds: they must agree."""
    server = ATTACKS.get(name).model_modification(AttackSettings(name=name))
    assert (server is None) == (plugins.attack_card(name).modifies_model is None)  # type: ignore[union-attr]
    if server is not None:
        assert server.describe.__doc__ and server.server_part({}) == {}
