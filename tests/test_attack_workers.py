"""``feddp-eval attack`` with paired seeds runs a worker process beside itself (it trains and attacks
the defended arm, then seed runs): Ctrl-C, or ``kill`` of the command alone, stops that worker too,
with one line and exit 130, never a worker's traceback or an orphan that computes on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import children, group_alive

from feddp_eval.config import ExperimentConfig, to_toml, with_overrides


@pytest.mark.parametrize("stop", ["ctrl-c-to-the-group", "sigterm-to-the-command"])
def test_a_stopped_attack_stops_its_worker(tmp_path: Path, tiny_config: ExperimentConfig, stop: str) -> None:
    config = tmp_path / "tiny.toml"
    # No plateau stop: the attacks must still be running when the stop lands.
    config.write_text(
        to_toml(with_overrides(tiny_config, {"attack.utility_seeds": 3, "attack.plateau": 0.0}))
    )
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "feddp_eval.cli", "attack", "-c", str(config), "--noise", "1.1"]
    command += ["--iterations", "20000", "--out", str(out), "--quiet"]  # attacks that would run for minutes
    process = subprocess.Popen(
        command,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a terminal's foreground job has
        # The test runner's own SIGINT disposition (ignored under a non-interactive shell) is not the
        # user's terminal's: Python installs its Ctrl-C handler only where SIGINT is at its default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        # Both arms trained (the worker attacks the defended one while this process attacks the
        # reference): the stop lands mid-attack on both sides.
        while len(list(out.glob("*/summary.json"))) < 2 or not children(process.pid):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the two arms did not train"
            time.sleep(0.05)
        if stop == "ctrl-c-to-the-group":
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.terminate()  # SIGTERM to the command alone, as `kill PID` sends it
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr[-3000:]
        assert "error: interrupted" in stderr.strip().splitlines() and "Traceback" not in stderr, stderr
        deadline = time.monotonic() + 20
        while group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not group_alive(process.pid), "a worker outlived the attack command"
    finally:
        if group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
