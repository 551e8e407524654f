"""The one way the kit runs the reference server as a process: start, wait for /ready, stop.

The embedded provider, the chaos stack and the benchmark each start `python -m reference_server
serve` (the benchmark its empty endpoints too). The server is its own process group
(`start_new_session`), so a stop reaches Granian's workers and Ctrl-C stays the caller's; its
settings come only from the caller, beside the few variables of our own environment listed in
INHERITED. Nothing here imports the server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from conformance.stack.base import StackError

#: The server's own command line (after the interpreter).
SERVE = ("-m", "reference_server", "serve")
#: Variables of our own environment a server process inherits; its settings come only from us.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "PYTHONPATH",
             "VIRTUAL_ENV", "SSL_CERT_FILE", "SSL_CERT_DIR")
STOP_GRACE_SECONDS = 15.0
READY_TIMEOUT_SECONDS = 60.0
READY_POLL_SECONDS = 0.05


def inherited_env() -> dict[str, str]:
    """The part of our environment a server process gets (PATH, locale, virtualenv, CA files)."""
    return {name: os.environ[name] for name in INHERITED if name in os.environ}


def last_line(path: Path) -> str:
    """The last non-empty line of a log file (for a one-line error), or ''."""
    with contextlib.suppress(OSError):
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""
    return ""


@dataclass
class ServerProcess:
    """One server process group and where its output goes (stderr may be stdout's file)."""

    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def group_alive(self) -> bool:
        """Whether any process of the group is left (Granian workers may outlive the parent)."""
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def kill_group(self, sig: signal.Signals = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None when the process is still running after `timeout`."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def exited(self) -> str | None:
        """None while the process runs, else one line saying how it ended."""
        status = self.proc.poll()
        if status is None:
            return None
        return f"exited with status {status}: {last_line(self.stderr) or 'no message'}"

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM the process group, SIGKILL it after the grace; the exit status."""
        if self.alive():
            self.kill_group(signal.SIGTERM)
            if self.wait(grace) is None:
                self.kill_group(signal.SIGKILL)
                self.wait(10)
        # Workers outlive a killed parent otherwise; the group is ours alone.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode


def start(settings: Mapping[str, str], *, cwd: Path | None, stdout: Path,
          stderr: Path | None = None, args: Sequence[str] = SERVE,
          prefix: Sequence[str] = ()) -> ServerProcess:
    """Start `python <args>` (the reference server by default) in a process group of its own.

    `settings` is its whole configuration beside INHERITED; `prefix` runs it under another
    command (the benchmark's `taskset`); without `stderr` both streams go to `stdout`.
    """
    env = inherited_env() | dict(settings)
    with open(stdout, "wb") as out:
        if stderr is None:
            proc = subprocess.Popen([*prefix, sys.executable, *args], env=env, cwd=cwd,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        else:
            with open(stderr, "wb") as err:
                proc = subprocess.Popen([*prefix, sys.executable, *args], env=env, cwd=cwd,
                                        stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
    return ServerProcess(proc, stdout, stdout if stderr is None else stderr)


def wait_ready(
    ready_url: str,
    *,
    still_running: Callable[[], str | None],
    verify: ssl.SSLContext | bool = True,
    timeout: float = READY_TIMEOUT_SECONDS,
    poll: float = READY_POLL_SECONDS,
    transport: httpx.BaseTransport | None = None,
) -> float:
    """Poll GET ready_url until 200; the seconds it took (StackError otherwise).

    `still_running` returns None while the server lives, else why it stopped; a dead server
    ends the wait at once instead of at the deadline.
    """
    started = time.monotonic()
    deadline = started + timeout
    last = "no answer"
    # A transport (conformance.resolve's, for a name DNS does not know) brings its own TLS.
    with httpx.Client(verify=verify, timeout=httpx.Timeout(2.0), transport=transport) as client:
        while True:
            stopped = still_running()
            if stopped is not None:
                raise StackError(stopped)
            try:
                response = client.get(ready_url)
                if response.status_code == 200:
                    return time.monotonic() - started
                last = f"GET /ready answered {response.status_code}: {response.text[:200]}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            if time.monotonic() >= deadline:
                raise StackError(f"the server was not ready within {timeout:.0f}s ({last})")
            time.sleep(poll)
