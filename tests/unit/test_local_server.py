"""Stopping a local server's process group: the workers shut down on SIGTERM; a leader that
only waits for them is killed once they are gone; a leader alone is waited for."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from mlflow_fun.extract.local_server import group_members, stop_group

# A stand-in for `mlflow server`: ignores SIGTERM (MLflow's forwards it), waits for its
# worker, then takes a minute to end (MLflow's interpreter teardown takes about a second).
LEADER = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, lambda *_: None)
worker = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
worker.wait()
time.sleep(60)
"""
# A worker that shuts down on SIGTERM, saying so in a file (uvicorn's graceful stop).
WORKER = """
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
def stop(*_):
    out.write_text("stopped on SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
out.write_text("ready")
time.sleep(60)
"""
# A server that runs alone and needs a moment after SIGTERM to finish.
ALONE = """
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[1])
def stop(*_):
    time.sleep(0.3)
    out.write_text("stopped on SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
out.write_text("ready")
time.sleep(60)
"""


def _started(*command: str, ready: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", *command], start_new_session=True)
    deadline = time.monotonic() + 30
    while not (ready.exists() and ready.read_text() == "ready"):
        assert time.monotonic() < deadline, "the test's server did not start"
        time.sleep(0.01)
    return process


def test_the_leader_is_killed_once_its_workers_stopped(tmp_path: Path) -> None:
    said = tmp_path / "worker"
    leader = _started(LEADER, WORKER, str(said), ready=said)
    assert len(group_members(leader.pid)) == 2

    started = time.monotonic()
    stop_group(leader.pid, leader, grace=30.0)

    assert said.read_text() == "stopped on SIGTERM"
    assert leader.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 30.0  # killed then, not at the end of the grace
    assert group_members(leader.pid) == set()


def test_a_leader_alone_is_waited_for(tmp_path: Path) -> None:
    said = tmp_path / "server"
    server = _started(ALONE, str(said), ready=said)
    assert group_members(server.pid) == {server.pid}

    stop_group(server.pid, server, grace=30.0)

    assert (said.read_text(), server.returncode) == ("stopped on SIGTERM", 0)
    assert group_members(server.pid) == set()
