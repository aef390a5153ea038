"""Deployment: a SuperLink and two SuperNodes as separate processes on 127.0.0.1, ``flwr run`` of
this repository's Flower App for 2 rounds, the captures checked, every process stopped.

No network beyond the loopback interface: Flower's telemetry and update check are off. About
90 s on 2 busy cores (marked ``deployment``; CI runs it): every ClientApp message runs in a fresh
process (Flower's subprocess isolation), 5 messages per node.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import free_ports
from processes import children

from feddp_eval.config import ExperimentConfig, load_config, to_toml
from feddp_eval.federated.capture import list_captures
from feddp_eval.io import read_json
from feddp_eval.pipeline import run_train

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
TIMEOUT_S = 240


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        kids = children(todo.pop())
        found |= kids
        todo.extend(kids)
    return found


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A SuperLink and 2 SuperNodes (partition-id 0 and 1); stopped, with everything they started."""
    link, *nodes = free_ports(3)
    env = {
        **os.environ,
        "FLWR_HOME": str(tmp_path / "flwr-home"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
    }
    (tmp_path / "flwr-home").mkdir()
    connection = f'[superlink.loopback]\naddress = "127.0.0.1:{link}"\ninsecure = true\n'
    (tmp_path / "flwr-home" / "config.toml").write_text(connection)
    local = ["--insecure", "--host", "127.0.0.1"]
    commands = [
        ["flower-superlink", *local, "--port", str(link), "--disable-runtime-dependency-installation"]
    ]
    for i, port in enumerate(nodes):
        node = ["--superlink", f"127.0.0.1:{link}", "--node-config", f"partition-id={i} num-partitions=2"]
        commands.append(["flower-supernode", *local, "--port", str(port), *node])
    started: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for k, command in enumerate(commands):
            log = open(tmp_path / f"process-{k}.log", "wb")  # noqa: SIM115  (closed below)
            logs.append(log)
            command[0] = str(BIN / command[0])
            started.append(subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log, stderr=log))
            if k == 0:
                time.sleep(3)  # the SuperLink listens before the nodes dial it
        yield {"env": env, "dir": tmp_path}
    finally:
        _stop(started)
        for log in logs:
            log.close()


def _stop(started: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process we started, then SIGKILL whatever they started that is still there."""
    tree = {pid for p in started for pid in _descendants(p.pid)}
    for p in reversed(started):
        p.send_signal(signal.SIGTERM)
    for p in started:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    deadline = time.monotonic() + 10
    while (alive := {pid for pid in tree if Path(f"/proc/{pid}").exists()}) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in alive:  # only processes the ones we started started
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.deployment
def test_flwr_run_on_a_loopback_superlink_writes_the_run_the_local_engine_writes(
    federation: dict[str, object], tiny_config: ExperimentConfig
) -> None:
    folder = federation["dir"]
    assert isinstance(folder, Path)
    (folder / "tiny.toml").write_text(to_toml(tiny_config))
    out = folder / "deployed"
    run_config = f'config="{folder / "tiny.toml"}" out="{out}"'
    done = subprocess.run(
        [str(BIN / "flwr"), "run", str(ROOT), "loopback", "--run-config", run_config, "--stream"],
        env=federation["env"],  # type: ignore[arg-type]
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert read_json(out / "manifest.json")["status"] == "complete", done.stdout[-3000:]
    captures = list_captures(out)
    assert [(c.round, c.site_index) for c in captures] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    local = run_train(load_config(folder / "tiny.toml"), run_dir=folder / "local").run_dir
    for name in ("metrics.csv", "privacy.json", "model.safetensors"):
        assert (out / name).read_bytes() == (local / name).read_bytes(), name
    for capture in captures:
        twin = local / "captures" / capture.folder.name / f"site-{capture.site_index}.safetensors"
        assert capture.file("update_file").read_bytes() == twin.read_bytes()
