"""Tensor files read back the same way in every process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from feddp_eval.io import load_tensors, save_tensors

_NAMES = [f"layer{i}.{kind}" for i in range(12) for kind in ("weight", "bias")]


def test_loaded_names_come_back_sorted_in_every_process(tmp_path: Path) -> None:
    path = tmp_path / "update.safetensors"
    save_tensors(path, {name: torch.full((3,), float(i)) for i, name in enumerate(reversed(_NAMES))})
    assert list(load_tensors(path)) == sorted(_NAMES)
    # The parser's own order changes between processes; flattening an update in that order
    # would sum floats differently in every process.
    script = f"from feddp_eval.io import load_tensors; print(','.join(load_tensors({str(path)!r})))"
    orders = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
        for _ in range(3)
    }
    assert orders == {",".join(sorted(_NAMES)) + "\n"}
    assert torch.equal(load_tensors(path)["layer0.bias"], torch.full((3,), float(len(_NAMES) - 2)))
