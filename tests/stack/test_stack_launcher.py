"""The launcher on a real process tree: its own group, ready on /ready, stopped whole, children too.

The launched program is a small Python HTTP server (no reference server, no database) that starts
a child first, as Granian starts its workers; the child ignores SIGTERM, so only a stop that
reaches the whole group ends it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.stack import launcher
from conformance.stack.base import StackError

#: Parent: starts a SIGTERM-ignoring child, records both pids and its environment, serves /ready.
PROGRAM = r"""
import json, os, signal, subprocess, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

out = os.environ["LAUNCHER_TEST_OUT"]
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(120)"])
if os.environ.get("LAUNCHER_TEST_STUBBORN") == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(out + ".tmp", "w") as f:
    json.dump({"pid": os.getpid(), "pgid": os.getpgid(0), "child": child.pid,
               "env": dict(os.environ)}, f)
os.replace(out + ".tmp", out)

class Ready(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/ready" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["LAUNCHER_TEST_PORT"])), Ready).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gone(pid: int) -> bool:
    """No such process, or a zombie (this machine's init may be slow to reap orphans)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _wait_gone(pid: int, bound: float) -> bool:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


def _launch(tmp_path: Path, **extra: str) -> tuple[launcher.ServerProcess, str, Path]:
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    port = _free_port()
    out = tmp_path / "started.json"
    settings = {"LAUNCHER_TEST_OUT": str(out), "LAUNCHER_TEST_PORT": str(port), **extra}
    server = launcher.start(settings, cwd=tmp_path, stdout=tmp_path / "out.log",
                            args=(str(program),))
    return server, f"http://127.0.0.1:{port}/ready", out


@pytest.fixture
def cleanup() -> Iterator[list[launcher.ServerProcess]]:
    servers: list[launcher.ServerProcess] = []
    yield servers
    for server in servers:
        server.kill_group()
        server.wait(10)


def test_started_in_its_own_group_ready_then_stopped_with_its_children(
    tmp_path: Path, cleanup: list[launcher.ServerProcess]
) -> None:
    server, url, out = _launch(tmp_path)
    cleanup.append(server)
    seconds = launcher.wait_ready(url, still_running=server.exited, timeout=30)
    assert 0 <= seconds < 30
    started = json.loads(out.read_text())
    assert started["pid"] == server.pid
    assert started["pgid"] == server.pid != os.getpgid(0)  # a group of its own, not ours
    assert os.getpgid(started["child"]) == server.pid
    began = time.monotonic()
    status = server.stop(grace=5)
    assert status is not None and status != 0  # ended by SIGTERM
    assert _wait_gone(started["child"], 5), "the SIGTERM-ignoring child outlived the stop"
    assert time.monotonic() - began < 10
    assert not server.alive()


def test_a_parent_ignoring_sigterm_is_killed_after_the_grace(
    tmp_path: Path, cleanup: list[launcher.ServerProcess]
) -> None:
    server, url, out = _launch(tmp_path, LAUNCHER_TEST_STUBBORN="1")
    cleanup.append(server)
    launcher.wait_ready(url, still_running=server.exited, timeout=30)
    child = json.loads(out.read_text())["child"]
    began = time.monotonic()
    assert server.stop(grace=1) == -9  # SIGKILL, once the grace was over
    elapsed = time.monotonic() - began
    assert 1 <= elapsed < 8
    assert _wait_gone(child, 5)


def test_the_server_gets_the_inherited_variables_and_its_settings_only(
    tmp_path: Path, cleanup: list[launcher.ServerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "LC_CTYPE" in launcher.INHERITED  # the benchmark once lacked it (issue 15)
    monkeypatch.setenv("LC_CTYPE", "C.UTF-8")
    monkeypatch.setenv("DATABASE_URL", "postgresql://ours@127.0.0.1/not-the-servers")
    server, url, out = _launch(tmp_path, APP_ENVIRONMENT="test")
    cleanup.append(server)
    launcher.wait_ready(url, still_running=server.exited, timeout=30)
    env = json.loads(out.read_text())["env"]
    assert env["LC_CTYPE"] == "C.UTF-8"
    assert env["APP_ENVIRONMENT"] == "test"
    assert "DATABASE_URL" not in env  # ours is not the server's setting
    assert set(env) - {"LAUNCHER_TEST_OUT", "LAUNCHER_TEST_PORT", "APP_ENVIRONMENT"} <= set(
        launcher.INHERITED)


def test_a_server_that_dies_ends_the_wait_at_once(tmp_path: Path) -> None:
    server = launcher.start({}, cwd=tmp_path, stdout=tmp_path / "out.log",
                            args=("-c", "import sys; sys.exit('no database configured')"))
    began = time.monotonic()
    with pytest.raises(StackError, match="exited with status 1: no database configured"):
        launcher.wait_ready(f"http://127.0.0.1:{_free_port()}/ready",
                            still_running=server.exited, timeout=30)
    assert time.monotonic() - began < 10
    server.stop(grace=1)


def test_no_answer_is_a_stack_error_at_the_deadline(tmp_path: Path) -> None:
    began = time.monotonic()
    with pytest.raises(StackError, match=r"not ready within 1s \(ConnectError"):
        launcher.wait_ready(f"http://127.0.0.1:{_free_port()}/ready",
                            still_running=lambda: None, timeout=1)
    assert 1 <= time.monotonic() - began < 5
