"""``feddp-eval sweep --executor ray``: the same results.csv as the process pool, a cluster of a head
and a worker node on 127.0.0.1 that loses its worker mid-sweep, a stop that stops every Ray process,
and refusals in one line.

Marked ``ray`` (CI runs it; no skip): starts a local Ray, and a head and a worker node with
``ray start``; every process it starts is stopped by its process group, never by name (``ray stop``
would stop every Ray on the machine). Points are tiny: 16 px tiles, one round, a few dozen attack
iterations. The file took 140–149 s on 2 cores at load average 11.5–13.8 (other jobs on the machine); most
of it is process start-up (Ray's services, each worker's torch import).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import free_ports
from processes import group_alive

from feddp_eval.config import ExperimentConfig, to_toml, with_overrides

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent
TIMEOUT_S = 240
GRID = ["--noise", "0.01", "--iterations", "30"]  # 2 points: the reference and dp-sgd σ = 0.01


def _env(**extra: str) -> dict[str, str]:
    # One torch thread per task on every machine: --jobs = cores gives cores / jobs = 1 thread.
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        **extra,
    }


JOBS = str(os.cpu_count() or 1)  # one thread per worker (cores / jobs), so a 1-CPU node runs any task


def _sweep(config: Path, out: Path, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "feddp_eval.cli", "sweep", "-c", str(config), "--out", str(out)]
    return [*command, *GRID, "--jobs", JOBS, *extra]


@pytest.fixture
def sweep_toml(tmp_path: Path, tiny_config: ExperimentConfig) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(to_toml(with_overrides(tiny_config, {"train.rounds": 1})))
    return path


def _run(command: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=_env(**extra), capture_output=True, text=True, timeout=TIMEOUT_S)


def _files(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


@pytest.mark.ray
def test_ray_writes_the_bytes_the_process_pool_writes_and_the_pool_never_imports_ray(
    tmp_path: Path, sweep_toml: Path
) -> None:
    pool, cluster = tmp_path / "pool", tmp_path / "ray"
    # The --jobs path, run in a process that then reports whether anything imported Ray.
    probe = (
        "import sys\nfrom feddp_eval.cli import main\nsys.argv = sys.argv[1:]\n"
        "try:\n    main()\nfinally:\n    print('ray imported:', 'ray' in sys.modules, file=sys.stderr)\n"
    )
    done = _run([sys.executable, "-c", probe, *_sweep(sweep_toml, pool, "--quiet")[2:]])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ray imported: False" in done.stderr

    done = _run(_sweep(sweep_toml, cluster, "--executor", "ray", "--json"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["computed"] == 2
    assert (cluster / "results.csv").read_bytes() == (pool / "results.csv").read_bytes()
    assert _files(cluster) == _files(pool)  # the same folder layout, written by the driver
    for name in ("metrics.csv", "model.safetensors", "privacy.json"):
        for run in (pool / "runs").iterdir():
            assert (cluster / "runs" / run.name / name).read_bytes() == (run / name).read_bytes()
    scores = next((cluster / "runs").glob("*/attacks/*/scores.json")).read_text()
    assert '"run_dir": "runs/' in scores  # the driver's relative path, not a node's scratch folder


def _group_processes(pgid: int) -> dict[int, str]:
    """Command lines of the live processes of process group ``pgid``, read from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found[int(stat.parent.name)] = command
    return found


@pytest.mark.ray
@pytest.mark.parametrize("stop", ["sigterm-to-the-driver", "ctrl-c-to-the-group"])
def test_a_stopped_sweep_stops_every_ray_task_and_process(
    tmp_path: Path, tiny_config: ExperimentConfig, stop: str
) -> None:
    # Attacks that would run for an hour: 200,000 iterations and no plateau stop. With the stop the
    # whole sweep ended in seconds, once before this test saw a task start; with 5,000 iterations it
    # once ended (exit 0) before a loaded machine's polling saw one, in a full `pytest -n 2` run.
    config = tmp_path / "long.toml"
    config.write_text(to_toml(with_overrides(tiny_config, {"train.rounds": 1, "attack.plateau": 0.0})))
    command = _sweep(config, tmp_path / "sweep", "--executor", "ray", "--quiet")
    command[command.index("30")] = "200000"
    driver = subprocess.Popen(
        command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        # Ray titles a worker process after the task it runs: wait until one is computing.
        while not any(
            "_train_task" in c or "_finish_task" in c for c in _group_processes(driver.pid).values()
        ):
            if driver.poll() is not None:
                _, stderr = driver.communicate()
                ended = f"the sweep ended (exit {driver.returncode}) before a Ray task was seen"
                pytest.fail(f"{ended}: {stderr[-3000:]}")
            assert time.monotonic() < deadline, "no Ray task started"
            time.sleep(0.1)
        if stop == "sigterm-to-the-driver":
            driver.terminate()  # SIGTERM to the driver alone, as `kill PID` sends it
        else:
            os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        _, stderr = driver.communicate(timeout=TIMEOUT_S)
        assert driver.returncode == 130 and "run the same command again to resume" in stderr, stderr[-3000:]
        deadline = time.monotonic() + 60  # generous: a loaded machine is slow to reap Ray's processes
        while (left := _group_processes(driver.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"Ray processes outlived the sweep: {left}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()


# --------------------------------------------------------------------------- a cluster on 127.0.0.1


class _Cluster:
    """A Ray head with no CPUs (tasks run on the worker node) and one worker node of 1 CPU, each
    ``ray start --block`` in a process group of its own, stopped by that group."""

    def __init__(self, temp: Path, logs: Path) -> None:
        self.temp, self.logs = temp, logs
        self.port, client, agent_head, agent_node = free_ports(4)
        self.address = f"127.0.0.1:{self.port}"
        common = ["--block", "--disable-usage-stats", f"--temp-dir={temp}", "--node-ip-address=127.0.0.1"]
        self.head_command = [
            str(BIN / "ray"), "start", "--head", f"--port={self.port}", "--num-cpus=0", "--num-gpus=0",
            "--include-dashboard=false", f"--ray-client-server-port={client}",
            f"--dashboard-agent-listen-port={agent_head}", *common,
        ]  # fmt: skip
        self.node_command = [
            str(BIN / "ray"), "start", f"--address={self.address}", "--num-cpus=1", "--num-gpus=0",
            f"--dashboard-agent-listen-port={agent_node}", *common,
        ]  # fmt: skip
        self.groups: list[subprocess.Popen[bytes]] = []

    def _start(self, command: list[str], name: str) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}-{len(self.groups)}.log", "wb") as log:
            process = subprocess.Popen(command, env=_env(), stdout=log, stderr=log, start_new_session=True)
        self.groups.append(process)
        return process

    def start_head(self) -> None:
        self._start(self.head_command, "head")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            time.sleep(0.2)
        raise AssertionError(f"the Ray head did not listen on {self.address}; see {self.logs}")

    def start_node(self) -> subprocess.Popen[bytes]:
        """Start the worker node and wait until it has joined: `ray start` prints "Ray runtime
        started." once its raylet is registered with the head. A sweep started before that sees a
        head of 0 CPUs and is refused (exit 2), as CI once saw on a loaded machine."""
        process = self._start(self.node_command, "node")
        log = self.logs / f"node-{len(self.groups) - 1}.log"
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text(errors="replace"):
            assert process.poll() is None, f"the Ray node exited; see {log}"
            assert time.monotonic() < deadline, f"the Ray node did not join {self.address}; see {log}"
            time.sleep(0.2)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL a node: its `ray start`, raylet and workers (the group we started), no clean-up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        for process in reversed(self.groups):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        # A raylet may take long to act on SIGTERM; after a short grace, SIGKILL what is left.
        _wait_gone(self.groups, seconds=3)
        for process in self.groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        _wait_gone(self.groups, seconds=20)


def _wait_gone(groups: list[subprocess.Popen[bytes]], *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while any(group_alive(p.pid) for p in groups) and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[_Cluster]:
    # Ray's sockets live in its temporary folder; an AF_UNIX path must stay under 108 bytes.
    temp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))
    started = _Cluster(temp, tmp_path)
    try:
        started.start_head()
        yield started
    finally:
        started.stop()
        shutil.rmtree(temp, ignore_errors=True)
    assert not any(group_alive(p.pid) for p in started.groups), "a Ray process outlived the test"


def _digests(out: Path) -> dict[str, tuple[str, int]]:
    """(sha256, mtime ns) of every file of the finished points: their rows and their runs."""
    found = {}
    for row_file in (out / "points").glob("*/row.json"):
        row = json.loads(row_file.read_text())
        for path in [row_file, *(p for p in (out / row["run_dir"]).rglob("*") if p.is_file())]:
            found[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return found


@pytest.mark.ray
def test_a_worker_node_lost_mid_sweep_keeps_its_points_and_the_rerun_computes_the_rest(
    cluster: _Cluster, tmp_path: Path, sweep_toml: Path
) -> None:
    out = tmp_path / "sweep"
    command = _sweep(sweep_toml, out, "--executor", "ray", "--address", cluster.address, "--json")
    headless = _run(command)  # the head alone has no CPUs: refused, not queued forever
    assert headless.returncode == 2 and "largest node has 0" in headless.stderr, headless.stderr[-3000:]
    assert len(headless.stderr.strip().splitlines()) == 1 and not out.exists(), headless.stderr

    node = cluster.start_node()
    # The attacks long enough that the kill lands before the last point is back.
    command[command.index("30")] = "100"
    driver = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not list(out.glob("points/*/row.json")) and driver.poll() is None:
            assert time.monotonic() < deadline, "no point finished on the cluster"
            time.sleep(0.02)
        cluster.kill(node)
        _, stderr = driver.communicate(timeout=TIMEOUT_S)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    kept = _digests(out)
    finished = len(list(out.glob("points/*/row.json")))
    assert finished == 1, "the kill must land mid-sweep for this test to mean anything"
    assert driver.returncode == 1, stderr[-3000:]
    # Our one line last; above it at most Ray's own report of the dead node, never a traceback.
    assert "was lost" in stderr.strip().splitlines()[-1] and "run the same command again" in stderr
    assert "Traceback" not in stderr, stderr

    cluster.start_node()
    again = _run(command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.startswith("{"), again.stdout[:3000] + again.stderr[-3000:]
    report = json.loads(again.stdout)
    assert report["computed"] == 1 and report["missing"] == []
    after = _digests(out)
    assert {k: after[k] for k in kept} == kept  # the finished point's files untouched
    with open(out / "results.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 2


# --------------------------------------------------------------------------- refusals


def test_an_unreachable_cluster_is_one_line_and_exit_2(tmp_path: Path, sweep_toml: Path) -> None:
    from typer.testing import CliRunner

    from feddp_eval.cli import app

    (closed,) = free_ports(1)  # nothing listens there
    cases = {
        f"127.0.0.1:{closed}": "cannot reach the Ray cluster at 127.0.0.1",
        "head-node": "must be HOST:PORT",
    }
    for address, message in cases.items():
        args = ["sweep", "-c", str(sweep_toml), "--out", str(tmp_path / "sweep"), "--executor", "ray"]
        result = CliRunner().invoke(app, [*args, "--address", address, "-q"], env={"COLUMNS": "300"})
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    args = ["sweep", "-c", str(sweep_toml), "--out", str(tmp_path / "sweep"), "--address", "auto", "-q"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "needs `sweep.executor" in result.output, result.output
    assert not (tmp_path / "sweep").exists()  # nothing trained, no folder left behind
