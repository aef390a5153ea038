"""What the plugins declare about themselves, for the core and for the other plugins to read.

The core never imports a plugin, and a plugin never imports another (``docs/architecture.md``). Where
one of them needs what only a plugin knows (the report a defense's colour and the sentence that says
what it protects, the sweep a defense's granularity), the plugin files a card here when it is
registered, and the reader looks the card up by the registered name. The plugin packages fill these
catalogues when they are imported, so the entry points and the workflows import them first (as they
do before they validate a config or hash one: whether an attack modifies the model the server sends
changes its training run's hash).

Cards are plain data: reading one imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from feddp_eval.errors import ConfigError


@dataclass(frozen=True)
class DefenseCard:
    """What a registered defense declares (the class attributes of ``defenses.base.Defense``).

    Attributes:
        name: The registered name.
        side: ``client`` or ``server``.
        granularity: ``sample-level``, ``client-level`` or ``none``.
        protects_against_server: Whether the server that captures updates is kept out.
        protects: The report's sentence: what the defense does and whom it protects ("" when it
            declares none: the report then calls it a custom defense).
        caveat: What the report's verdict adds after this defense's sentence ("" for nothing).
        colour: Its colour on the report's figures (``None``: one of the spare colours, by name).
        marker: Its marker on the report's figures (``None``: the spare marker).
        order: Its place in the report's tables and figures (``None``: after every ordered defense,
            alphabetically).
    """

    name: str
    side: str
    granularity: str
    protects_against_server: bool
    protects: str = ""
    caveat: str = ""
    colour: str | None = None
    marker: str | None = None
    order: int | None = None


_DEFENSES: dict[str, DefenseCard] = {}


def file_defense(card: DefenseCard) -> None:
    """File a defense's card (called by the ``defenses`` registry as each defense registers)."""
    _DEFENSES[card.name] = card


def defense_cards() -> list[DefenseCard]:
    """Every filed defense card, by name; an error when no defense plugin was loaded."""
    if not _DEFENSES:
        raise ConfigError(
            "no defense has declared itself: the defense plugins are not loaded; `import defenses` "
            "first (the CLI and the workflows do)"
        )
    return [_DEFENSES[name] for name in sorted(_DEFENSES)]


def defense_card(name: str) -> DefenseCard | None:
    """The card of the defense registered as ``name``; ``None`` for a name no plugin registered (a
    composed ``client+server`` name, or one from results written by a plugin no longer installed)."""
    return {card.name: card for card in defense_cards()}.get(name)


@dataclass(frozen=True)
class KnownLeak:
    """An attack's measurement on the textbook leak (one tile, one local step, masks known, no defense):
    the yardstick the report prints beside an honest server's verdicts.

    Attributes:
        recipe: The attack's recipe (``[attack] recipe``) that was measured.
        psnr: The reconstruction's PSNR in dB; ``guess_psnr``: the painted-mask guess's.
        ssim: The reconstruction's SSIM; ``guess_ssim``: the guess's.
        command: How it was measured.
        settings: The attack's ``Config`` as it was measured (``dataclasses.asdict``): a test fails when
            the attack's defaults move away from it, so the measurement cannot go stale unnoticed.
        smooth_psnr: The same attack, tile and guess through a U-Net with smooth activations
            (``[model] activation = "gelu"``): PSNR in dB (``None``: not measured); ``smooth_ssim``
            its SSIM; ``smooth_command`` how it was measured. It tells a weak attack from a network
            whose update resists it: a ReLU's update jumps where an activation switches, and an
            optimisation attack cannot see the jumps (``docs/guides/honest-server.md``).
        pattern_psnr: What the update itself holds of the same tile: PSNR in dB of L-BFGS on the same
            update from the same guess with the network's activation pattern (every ReLU gate and
            max-pool winner) frozen at the true tile's, an oracle and not an attack (``None``: not
            measured); ``pattern_ssim`` its SSIM; ``pattern_command`` how it was measured. Where it
            is far above the guess, the update leaks and a weak attack is what the verdict measures.
    """

    recipe: str
    psnr: float
    guess_psnr: float
    ssim: float
    guess_ssim: float
    command: str
    settings: Mapping[str, object]
    smooth_psnr: float | None = None
    smooth_ssim: float | None = None
    smooth_command: str | None = None
    pattern_psnr: float | None = None
    pattern_ssim: float | None = None
    pattern_command: str | None = None

    @property
    def margin_db(self) -> float:
        return self.psnr - self.guess_psnr

    @property
    def smooth_margin_db(self) -> float | None:
        return None if self.smooth_psnr is None else self.smooth_psnr - self.guess_psnr

    @property
    def pattern_margin_db(self) -> float | None:
        return None if self.pattern_psnr is None else self.pattern_psnr - self.guess_psnr


@dataclass(frozen=True)
class AttackCard:
    """What a registered attack declares (the class attributes of ``attacks.base.Attack``).

    Attributes:
        name: The registered name.
        threat: Its threat model, as the tables print it.
        modifies_model: The name of the model modification a malicious server sends for this attack
            (``None``: an honest server's attack, which only reads the captured updates). A modifying
            attack trains its own run: the modification enters the training run's config hash.
        modification_settings: ``(key, field)`` pairs: the ``[attack]`` settings (fields of
            ``AttackSettings``) that shape the modification, under the key the config hash gives them.
        recipes: The names ``[attack] recipe`` may select for this attack (``default`` always).
        known_leak: Its measurement on the textbook leak (``None``: not measured).
    """

    name: str
    threat: str
    modifies_model: str | None = None
    modification_settings: tuple[tuple[str, str], ...] = ()
    recipes: tuple[str, ...] = ("default",)
    known_leak: KnownLeak | None = None


_ATTACKS: dict[str, AttackCard] = {}


def file_attack(card: AttackCard) -> None:
    """File an attack's card (called by the ``attacks`` registry as each attack registers)."""
    _ATTACKS[card.name] = card


def attack_cards() -> list[AttackCard]:
    """Every filed attack card, by name; an error when no attack plugin was loaded."""
    if not _ATTACKS:
        raise ConfigError(
            "no attack has declared itself: the attack plugins are not loaded; `import attacks` first "
            "(the CLI and the workflows do): the config hash and the checks of `[attack]` read what each "
            "attack declares (whether it modifies the model the server sends, its recipes)"
        )
    return [_ATTACKS[name] for name in sorted(_ATTACKS)]


def attack_card(name: str) -> AttackCard | None:
    """The card of the attack registered as ``name``; ``None`` for a name no plugin registered."""
    return {card.name: card for card in attack_cards()}.get(name)


def modifies_model(attack: str) -> bool:
    """Whether the attack registered as ``attack`` is a malicious server's, which changes the model it
    sends (and so trains its own run); ``False`` for a name no plugin registered."""
    card = attack_card(attack)
    return card is not None and card.modifies_model is not None
