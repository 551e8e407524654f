"""Servers the benchmark starts, through the kit's launcher: in their own group, stopped by it."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

from conformance.stack import StackError, launcher

STOP_GRACE_SECONDS = 15.0
READY_TIMEOUT_SECONDS = 60.0


class BenchError(RuntimeError):
    """A phase could not run (a server did not start, a peer failed): one line for the user."""


@contextlib.contextmanager
def served(args: list[str], *, env: Mapping[str, str], log: Path, ready_url: str,
           prefix: list[str], timeout: float = READY_TIMEOUT_SECONDS,
           ) -> Iterator[subprocess.Popen[bytes]]:
    """A Python server process (`python <args>`), pinned by `prefix`, until GET ready_url is 200."""
    server = launcher.start(env, cwd=None, stdout=log, args=args, prefix=prefix)
    try:
        def still_running() -> str | None:
            exited = server.exited()
            return None if exited is None else f"{args[1]} {exited}"

        try:
            launcher.wait_ready(ready_url, still_running=still_running, timeout=timeout,
                                poll=0.1)
        except StackError as exc:
            raise BenchError(str(exc)) from None
        yield server.proc
    finally:
        server.stop(STOP_GRACE_SECONDS)
