"""What every stack provider shares: the Target, the errors, progress lines, signal handling.

A leaf of the stack package: the providers import it, and `conformance.stack` re-exports it, so
the package's `open_stack` may import the providers without an import cycle.
"""


from __future__ import annotations

import collections
import contextlib
import signal
import ssl
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType


class StackError(RuntimeError):
    """A stack could not be stood up or wrapped; the message is one line for the user."""


class StackConfigError(StackError, ValueError):
    """The options given to a provider are wrong (a bad URL, a missing file, an unknown option)."""


@dataclass(frozen=True, kw_only=True)
class Target:
    """A TaskForge deployment the kit can talk to, and what it knows about it."""

    base_url: str  # e.g. https://127.0.0.1:54321
    provider: str  # "docker" | "embedded" | "external"
    is_reference: bool  # True when we started the reference stack ourselves
    ca_bundle: Path | None = None  # PEM of the throwaway CA (trustme) for TLS verification
    database_url: str | None = None  # reachable from this host, for SQL checks
    redis_url: str | None = None
    log_file: Path | None = None  # where the server's JSON log lines can be read
    env: Mapping[str, str] = field(default_factory=dict)  # the reference server's settings
    admin_email: str | None = None  # an account created on the reference stack
    admin_password: str | None = None
    # The front door and what stands behind it (the docker stack's whole deployment; for others,
    # the run's --resolve, --metrics-url, --prometheus-url... options say it).
    resolve: tuple[str, ...] = ()  # HOST:PORT:ADDRESS, as curl's --resolve
    front_door: str | None = None  # what answers at base_url in front of the app, e.g. "nginx"
    metrics_url: str | None = None  # the app's metrics where Prometheus scrapes them
    prometheus_url: str | None = None
    alertmanager_url: str | None = None
    grafana_url: str | None = None
    grafana_token: str | None = None
    #: Docker facts of the docker stack's deployment for the backup checks (container ids, the
    #: backup schedule); empty elsewhere.
    docker: Mapping[str, str] = field(default_factory=dict)

    @property
    def resolve_map(self) -> dict[tuple[str, int], str]:
        from conformance.resolve import resolve_map

        return resolve_map(self.resolve)

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What httpx's `verify=` takes for this target: the CA bundle, else the system store."""
        return trusting(self.ca_bundle) if self.ca_bundle is not None else True


def trusting(ca_bundle: Path) -> ssl.SSLContext:
    """A client TLS context that trusts exactly the given CA bundle."""
    return ssl.create_default_context(cafile=str(ca_bundle))


#: The last lines said, for callers that show them elsewhere (the test suite's CI summary).
_SAID: collections.deque[str] = collections.deque(maxlen=200)


def say(line: str) -> None:
    """One line of progress for the user (stderr, so reports on stdout stay clean)."""
    _SAID.append(f"stack: {line}")
    print(f"stack: {line}", file=sys.stderr, flush=True)


def said() -> list[str]:
    """The lines said so far in this process (the last 200)."""
    return list(_SAID)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While open, SIGTERM raises KeyboardInterrupt, so `finally` blocks clean up as on Ctrl-C.

    Python's default SIGTERM ends the process without unwinding, which would leave containers
    and server processes behind. Signal handlers can only be set from the main thread; elsewhere
    this does nothing (the main thread's owner decides).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while cleaning up: a second Ctrl-C must not strand resources."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def remember(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = {s: signal.signal(s, remember) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        raise KeyboardInterrupt(f"signal {received[0]} during clean-up")
