"""Request slots: what MAX_CONNECTIONS bounds, and the long-polls that do not take those slots.

Granian counts every accepted connection against its `backpressure`, including one that has
not sent a byte yet, so with the limit at MAX_CONNECTIONS that many silent sockets stopped the
server answering anyone. The server now accepts CONNECTION_CEILING_FACTOR x MAX_CONNECTIONS
connections (Granian drops any that sends no complete request header within
HEADER_READ_TIMEOUT_SECONDS, silent or idle keep-alive alike), and MAX_CONNECTIONS bounds the
requests in progress here, in the app. Operations endpoints (/health, /ready, metrics) take no
slot: they are cheap and bounded by their own timeouts, and they must answer when the rest is
busy. A lease that long-polls takes a long-poll slot instead (at most MAX_CONNECTIONS per
process, LONG_POLLS_PER_CREDENTIAL per credential); without one it answers at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, MutableMapping

    from reference_server.config import Settings

    Scope = MutableMapping[str, Any]
    ASGIApp = Callable[..., Awaitable[None]]

#: Connections Granian accepts per process, in units of MAX_CONNECTIONS: the requests in
#: progress, as many long-polls, and twice as many idle or not yet speaking (each dropped after
#: HEADER_READ_TIMEOUT_SECONDS).
CONNECTION_CEILING_FACTOR = 4
_LEASE = re.compile(r"^/api/v1/workers/[^/]+/lease$")
_LEASE_TAIL = "/lease"  # a suffix test first: the regex runs only for lease paths


def connection_ceiling(settings: Settings) -> int:
    return settings.MAX_CONNECTIONS * CONNECTION_CEILING_FACTOR


class RequestSlots:
    """ASGI middleware: at most MAX_CONNECTIONS requests in progress; the rest wait their turn.

    Every request passes here, so a free slot costs a counter increment: no semaphore, no
    context manager, no future unless the slots are full (then waiters go in arrival order).
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app  # the wrapped application (tests reach the fast path through it)
        self._limit = settings.MAX_CONNECTIONS
        self._exempt = frozenset({"/health", "/ready", "/openapi.json", settings.METRICS_ENDPOINT})
        self._busy = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in self._exempt
            or (path.endswith(_LEASE_TAIL) and _LEASE.match(path))
        ):
            return await self.app(scope, receive, send)
        if self._busy >= self._limit or self._waiting:
            await self._wait()
        else:
            self._busy += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    async def _wait(self) -> None:
        """Until a finishing request hands this one its slot (counted for it in _release)."""
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._release()  # handed a slot just as it was cancelled: pass it on
            elif turn in self._waiting:
                self._waiting.remove(turn)
            raise

    def _release(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot goes to it: _busy stays as it is
                return
        self._busy -= 1


class LongPolls:
    """Who may wait in a lease: a bounded number per process and per credential."""

    def __init__(self, *, total: int, per_credential: int) -> None:
        self._total = total
        self._per_credential = per_credential
        self._held: Counter[str] = Counter()
        self._count = 0

    @contextlib.contextmanager
    def slot(self, credential: str) -> Iterator[bool]:
        """True while this lease may wait; False: answer with what is ready now."""
        if self._count >= self._total or self._held[credential] >= self._per_credential:
            yield False
            return
        self._count += 1
        self._held[credential] += 1
        try:
            yield True
        finally:
            self._count -= 1
            self._held[credential] -= 1
            if not self._held[credential]:
                del self._held[credential]
