"""The Flower guide's "drop CapturingStrategy into your own ServerApp" example, run as written.

The guide (``docs/guides/flower.md``) was the README's "Running on Flower" section."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from feddp_eval.federated.capture import list_captures
from feddp_eval.io import load_tensors

GUIDE = Path(__file__).parents[2] / "docs" / "guides" / "flower.md"


def example(name: str) -> str:
    """The python block after ``<!-- flower-example:NAME -->`` in the Flower guide."""
    found = re.search(rf"<!-- flower-example:{name} -->\n```python\n(.*?)```", GUIDE.read_text(), re.S)
    assert found, f"{GUIDE} has no flower-example:{name} block"
    return found.group(1)


def test_the_readme_app_captures_what_the_server_receives_and_the_attack_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_flower_app.py").write_text(example("app"))
    done = subprocess.run(
        [sys.executable, "my_flower_app.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    captures = list_captures(tmp_path / "runs" / "my-flower")
    assert [(c.round, c.site_index) for c in captures] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    # received − sent: round 2's global is round 1's plus the sample-weighted mean update (equal here).
    first = [c.load_update() for c in captures[:2]]
    start, after = captures[0].load_global(), captures[2].load_global()
    for name, weights in start.items():
        mean = (first[0][name] + first[1][name]) / 2
        assert torch_close(after[name], weights + mean), name
    assert load_tensors(captures[0].file("update_file")).keys() == start.keys()

    monkeypatch.chdir(tmp_path)
    printed: list[object] = []
    exec(compile(example("attack"), "flower-guide-attack", "exec"), {"print": printed.append})
    assert [tuple(shape) for shape in printed] == [(4, 3, 16, 16)]


def torch_close(a: object, b: object) -> bool:
    import torch

    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    return torch.allclose(a, b, atol=1e-6, rtol=0)
