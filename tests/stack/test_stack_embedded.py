"""The embedded provider: pip-shipped PostgreSQL and Redis, the server as a process, over TLS."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conformance.smoke import run_smoke
from conformance.stack import StackError, choose_provider, open_stack

CHILD_EXIT_TIMEOUT = 60.0


def _port_open(url: str) -> bool:
    host, port = url.rsplit("//", 1)[1].split("@")[-1].split("/")[0].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def test_embedded_stack_passes_the_smoke_sequence_and_leaves_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with open_stack("embedded") as target:
        result = run_smoke(target)
        assert result.job["status"] == "succeeded"
        assert target.is_reference and target.provider == "embedded"
        assert target.log_file is not None and target.log_file.is_file()
        root = target.log_file.parent
        urls = [target.base_url, target.database_url or "", target.redis_url or ""]
        assert all(_port_open(url) for url in urls)
    assert "provider embedded: chosen explicitly" in capsys.readouterr().err
    assert not root.exists()
    assert not any(_port_open(url) for url in urls)


def test_a_misconfigured_server_fails_with_its_one_line_error() -> None:
    with pytest.raises(StackError) as excinfo, \
            open_stack("embedded", server_env={"JWT_SECRET": "changeme-please"}):
        pass
    message = str(excinfo.value)
    assert "exited with status 2" in message
    assert "JWT_SECRET" in message
    assert "\n" not in message


def test_auto_falls_back_to_embedded_without_an_engine(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    kind, why = choose_provider()
    assert kind == "embedded"
    assert why.startswith("no Docker engine answers")
    assert "\n" not in why


CHILD = textwrap.dedent("""
    import signal
    # A Ctrl-C from a terminal: the test worker's own signal state (an ignored or blocked
    # SIGINT, left by gevent in load tests) is inherited and would swallow it.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import time
    from conformance.stack import open_stack
    with open_stack("embedded", create_admin=False) as target:
        print(target.log_file.parent, target.database_url, flush=True)
        for _ in range(600):  # bounded, like every wait here
            time.sleep(1)
""")


def test_sigterm_stops_the_server_and_removes_the_temporary_directory() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stderr is not None
        line = child.stdout.readline()  # printed once the stack is up; EOF if it failed
        assert line.strip(), child.stderr.read()[-2000:]
        root, database_url = line.split()
        assert Path(root).is_dir() and _port_open(database_url)
        os.kill(child.pid, 15)
        child.communicate(timeout=CHILD_EXIT_TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not Path(root).exists()
    assert not _port_open(database_url)
