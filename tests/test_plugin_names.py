"""No plugin's name is written outside its plugin (issue #26: "plugins that describe themselves").

A plugin declares what the rest of the code needs to know about it (``feddp_eval.plugins``), so the
core, the report and the other plugins never test for a registered name. This reads every string
literal of ``feddp_eval``, ``attacks``, ``defenses`` and ``reports`` with ``ast`` and fails on one
equal to a registered attack or defense name outside that plugin's own package, except the entries
of :data:`ALLOWED`, each with the reason it stays. Prose that mentions a name (a docstring, an error
message) is not equal to it and is not flagged.
"""

from __future__ import annotations

import ast
from pathlib import Path

from attacks import ATTACKS
from defenses import DEFENSES

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("feddp_eval", "attacks", "defenses", "reports")

# "none" is the undefended reference arm, which the core owns (DefenseConfig's default, the sweep's
# reference point, schema.setting_label); the word is also an ordinary value of unrelated settings
# (granularity, loss reduction, matplotlib styles). It is registered as a defense so that it runs
# through the same hooks, but it is not a plugin name to keep out of the core.
NOT_PLUGIN_NAMES = frozenset({"none"})

# (file, literal) → why it stays. Keep this short: a new entry needs a reason a reviewer accepts.
ALLOWED: dict[tuple[str, str], str] = {
    # Documented defaults live in the config dataclasses and nowhere else (docs/architecture.md).
    ("feddp_eval/config/sections.py", "inverting-gradients"): "the default `[attack] name`",
    ("feddp_eval/sweep/grid.py", "dp-sgd"): "the default `sweep.defenses`",
    ("feddp_eval/sweep/grid.py", "inverting-gradients"): "the default `sweep.attacks`",
    ("feddp_eval/config/sections.py", "dp-sgd"): (
        "`grad_sample_mode` acts only under dp-sgd, so only dp-sgd's hash holds it (its default `bk`)"
    ),
    ("feddp_eval/config/derive.py", "dp-sgd"): "documented CLI rule: `--noise` with no defense means DP-SGD",
    # Flower's own DP blocks mapped onto two of our defenses: the mapping is about those defenses, and
    # in a defense plugin it would make the plugin depend on Flower (an optional extra).
    ("feddp_eval/flower/dp.py", "central-dp"): "Flower's server-side fixed clipping is our central-dp",
    ("feddp_eval/flower/dp.py", "local-dp"): "Flower's LocalDpMod is our local-dp",
}


def plugin_names() -> dict[str, str]:
    """Every registered attack and defense name → the package that owns it."""
    owners = {name: "attacks" for name in ATTACKS.names()}
    owners |= {name: "defenses" for name in DEFENSES.names() if name not in NOT_PLUGIN_NAMES}
    return owners


def name_literals(path: Path, owners: dict[str, str], package: str) -> list[tuple[int, str]]:
    """(line, literal) of each string constant in ``path`` equal to a name ``package`` does not own."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return sorted(
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and owners.get(node.value, package) != package
    )


def foreign_names() -> dict[tuple[str, str], list[int]]:
    """(file, literal) → lines, for every plugin name written outside its plugin."""
    owners = plugin_names()
    found: dict[tuple[str, str], list[int]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, literal in name_literals(path, owners, package):
                found.setdefault((path.relative_to(ROOT).as_posix(), literal), []).append(line)
    return found


def test_the_scanner_finds_a_name_outside_its_plugin_and_not_inside(tmp_path: Path) -> None:
    path = tmp_path / "module.py"
    path.write_text(
        '"""Docstrings name dp-sgd in prose: not flagged."""\n'
        'SLOW = {"dp-sgd": 2}\n'
        "def f(name: str) -> bool:\n"
        '    return name == "dlg" or name == "dp-sgd σ=1"\n'
        'MESSAGE = f"use {1} or dlg"\n'
    )
    owners = {"dp-sgd": "defenses", "dlg": "attacks"}
    assert name_literals(path, owners, "reports") == [(2, "dp-sgd"), (4, "dlg")]
    assert name_literals(path, owners, "defenses") == [(4, "dlg")]


def test_the_scanner_knows_every_registered_plugin() -> None:
    owners = plugin_names()
    assert {"dlg", "inverting-gradients", "imprint"} <= {n for n, p in owners.items() if p == "attacks"}
    assert {"dp-sgd", "local-dp", "central-dp", "prune"} <= {n for n, p in owners.items() if p == "defenses"}


def test_no_plugin_name_is_written_outside_its_plugin() -> None:
    found = foreign_names()
    wrong = [
        f"{file}:{','.join(map(str, lines))}: {name!r}"
        for (file, name), lines in found.items()
        if (file, name) not in ALLOWED
    ]
    assert not wrong, (
        "plugin names written outside their plugin (ask the plugin's declared card instead, or add an "
        "entry with its reason to ALLOWED):\n" + "\n".join(wrong)
    )


def test_every_allowed_entry_is_still_needed() -> None:
    """An entry whose literal is gone is removed, so the list only ever shrinks to what remains."""
    stale = sorted(set(ALLOWED) - set(foreign_names()))
    assert not stale, f"ALLOWED entries no longer found (remove them): {stale}"
