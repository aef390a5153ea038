"""docs/datasets.md's commands, run as written against format-faithful fixtures.

Every ``feddp-eval`` line of a bash block after ``<!-- datasets-command -->`` runs in a folder
holding the fixtures under the names the page uses (``PanNuke``, ``MoNuSeg``, ``CoNSeP``,
``Lizard``, ``Regions``) and a copy of the page's TOML files, with flags appended that only make it small
(the tiny model, one round, two attack iterations, one seed and noise, one job): the data layout,
the format, the site split and the config files' ``[data]`` tables are the page's own. The copies keep
every table of the page's files and swap in the tiny model, one local step of 4 tiles and one
training seed per arm (``SMALL_TOML``): the page's 10 steps of 16 tiles on the full U-Net made this
the suite's slowest test (80 s of 2-core CI time) without testing more of the data path.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feddp_eval.cli import app
from feddp_eval.config import ExperimentConfig, from_dict, load_config, to_toml, validate
from tests.conftest import TINY
from tests.data.format_fixtures import WRITERS

DOCS = Path(__file__).parents[2] / "docs"
PAGE = DOCS / "datasets.md"
FOLDERS = {
    "pannuke": "PanNuke",
    "monuseg": "MoNuSeg",
    "consep": "CoNSeP",
    "lizard": "Lizard",
    "wsi": "Regions",
}
SMALL = {
    "attack": ["--iterations", "2", "--quiet"],
    "sweep": [
        "--rounds",
        "1",
        "--iterations",
        "2",
        "--seeds",
        "1",
        "--noise",
        "0.1",
        "--defense",
        "dp-sgd",
        "--jobs",
        "1",
        "--quiet",
    ],
    "train": ["--rounds", "1", "--quiet"],
    "report": [],
}
SMALL_TOML = {
    "model": TINY["model"],
    "train": {"local_steps": 1, "batch_size": 4},
    "attack": {"utility_seeds": 1},
}
runner = CliRunner()


def small_copy(toml: Path, to: Path) -> None:
    """Copy a page TOML to ``to`` with ``SMALL_TOML``'s tables merged in; ``[data]`` stays the page's."""
    raw = tomllib.loads(toml.read_text())
    for table, values in SMALL_TOML.items():
        raw[table] = {**raw.get(table, {}), **values}
    config = validate(from_dict(ExperimentConfig, raw))
    assert config.data == load_config(toml).data
    to.write_text(to_toml(config))


def commands() -> list[list[str]]:
    blocks = re.findall(r"<!-- datasets-command -->\n```bash\n(.*?)```", PAGE.read_text(), re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith("feddp-eval ")]


def test_the_page_shows_a_command_for_every_format() -> None:
    data = {args[args.index("--data") + 1] for args in commands() if "--data" in args}
    assert data == set(FOLDERS.values())


def test_the_page_names_each_licence() -> None:
    text = PAGE.read_text()
    for needle in ("CC BY-NC-SA 4.0", "Apache 2.0", "Project-MONAI/MONAI/issues/5412"):
        assert needle in text


@pytest.mark.parametrize("toml", ["pannuke.toml", "monuseg.toml"])
def test_the_page_configs_validate(toml: str) -> None:
    config = load_config(DOCS / toml)
    assert config.data.format == toml.removesuffix(".toml")


def test_the_page_commands_run_on_the_fixtures(
    tmp_path: Path, tiny_toml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for fmt, folder in FOLDERS.items():
        WRITERS[fmt](tmp_path / folder)
    (tmp_path / "docs").mkdir()
    shown = commands()
    assert shown, f"{PAGE} shows no command"
    used = {Path(args[args.index("--config") + 1]).name for args in shown if "--config" in args}
    assert used, f"{PAGE} runs no config file"
    for name in used:
        small_copy(DOCS / name, tmp_path / "docs" / name)
    monkeypatch.chdir(tmp_path)
    for args in shown:
        small = SMALL[args[0]]
        if args[0] in ("attack", "train") and "--config" not in args:
            small = ["--config", str(tiny_toml), *small]
        result = runner.invoke(app, [*args, *small])
        assert result.exit_code == 0, f"feddp-eval {shlex.join(args)}\n{result.output}"
    assert (tmp_path / "runs" / "pannuke" / "report.pdf").is_file()
