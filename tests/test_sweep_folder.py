"""The sweep folder's writing of files a remote worker sent back, and the cluster address check (no Ray)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from feddp_eval.errors import RunDirError
from feddp_eval.sweep.executors.ray_tasks import ClusterError, reachable
from feddp_eval.sweep.folder import read_files, write_files, write_run


def test_files_round_trip_and_skip(tmp_path: Path) -> None:
    files = {"a.json": b"{}", "captures/round-0001/site-0.safetensors": b"\x00\x01"}
    write_files(tmp_path / "run", files)
    assert read_files(tmp_path / "run") == files
    assert read_files(tmp_path / "run", skip=["a.json"]) == {k: v for k, v in files.items() if k != "a.json"}
    assert not list((tmp_path / "run").rglob("*.tmp"))  # no temporary file left behind


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../b", ""])
def test_a_file_outside_the_folder_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(RunDirError, match="outside its folder"):
        write_files(tmp_path / "run", {name: b"x"})
    assert not (tmp_path / "escape").exists()


def test_a_run_replaces_a_half_written_one_whole(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "abc"
    write_files(run, {"stale.txt": b"old"})
    write_run(run, {"summary.json": b"{}"})
    assert read_files(run) == {"summary.json": b"{}"}
    assert sorted(p.name for p in run.parent.iterdir()) == ["abc"]  # no staging folder left


def test_cluster_addresses_are_checked_before_ray_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ClusterError, match="must be HOST:PORT"):
        reachable("head-node")
    with pytest.raises(ClusterError, match="must be HOST:PORT"):
        reachable("head:99999")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    with pytest.raises(ClusterError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        reachable(f"127.0.0.1:{port}")  # bound, not listening: refused at once
    listener.listen()
    assert reachable(f"127.0.0.1:{port}") == f"127.0.0.1:{port}"
    listener.close()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    with pytest.raises(ClusterError, match="found no running Ray cluster"):
        reachable("auto")
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}\n")
    with pytest.raises(ClusterError, match=f"127.0.0.1:{port}"):
        reachable("auto")  # the recorded head is gone
