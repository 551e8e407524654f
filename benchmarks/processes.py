"""Processes the benchmark starts (servers, peers): started in their own group, stopped by it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

STOP_GRACE_SECONDS = 15.0
READY_TIMEOUT_SECONDS = 60.0


class BenchError(RuntimeError):
    """A phase could not run (a server did not start, a peer failed): one line for the user."""


def stop(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the process group we created, SIGKILL it after the grace."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived their parent


def _last_line(path: Path) -> str:
    with contextlib.suppress(OSError):
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""
    return ""


@contextlib.contextmanager
def served(args: list[str], *, env: Mapping[str, str], log: Path, ready_url: str,
           prefix: list[str], timeout: float = READY_TIMEOUT_SECONDS,
           ) -> Iterator[subprocess.Popen[bytes]]:
    """A Python server process (`python <args>`), pinned by `prefix`, until GET ready_url is 200."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([*prefix, sys.executable, *args], env=dict(env), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if proc.poll() is not None:
                    raise BenchError(f"{args[1]} exited with status {proc.returncode}: "
                                     f"{_last_line(log)}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(ready_url).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise BenchError(f"{args[1]} was not ready within {timeout:.0f}s")
                time.sleep(0.1)
        yield proc
    finally:
        stop(proc)
