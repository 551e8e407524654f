"""LISTEN/NOTIFY wake-ups: one listening connection per process, waiters keyed by queue.

The database notifies channel `taskforge_jobs` with a queue id (plus `:b` when a built-in runner can
take the work) whenever jobs become ready there (insert trigger, retry, reaper, promotion, resume).
Waiters register before they look for work, so a notification between the look and the wait is
never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Iterator

    import asyncpg

CHANNEL = "taskforge_jobs"
BUILTIN_SUFFIX = ":b"
RECONNECT_DELAY_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 10.0

log = logging.getLogger(__name__)


class Notifier:
    """Holds one pooled connection in LISTEN and wakes the waiters a notification concerns."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._queue_waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._builtin_handlers: list[Callable[[], None]] = []
        #: Run on the LISTEN connection each time it is (re)made, before listening counts.
        self._on_connect: list[Callable[[asyncpg.Connection], Awaitable[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._closing = asyncio.Event()
        #: Notifications received since start (observability and tests).
        self.received = 0

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def waiting(self, queue_id: object) -> int:
        """How many lessees wait on this queue right now."""
        return len(self._queue_waiters.get(str(queue_id), ()))

    def on_connect(self, hook: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
        """Run `hook` on the listening connection whenever it is made (session state that must
        live as long as the process: the built-in pool's lessee lock)."""
        self._on_connect.append(hook)

    async def start(self) -> None:
        """Start listening; return once LISTEN is in place (or after a bounded wait)."""
        if self._task is not None:
            return
        self._closing.clear()
        self._task = asyncio.create_task(self._run(), name="taskforge-notifier")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), CONNECT_TIMEOUT_SECONDS)

    async def stop(self) -> None:
        self._closing.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._listening.clear()
        self.wake_all()

    async def _run(self) -> None:
        while not self._closing.is_set():
            try:
                await self._listen_until_lost()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("notification listener lost its connection", exc_info=True)
            # Whatever was notified while we were away is unknown: let every waiter look again.
            self.wake_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), RECONNECT_DELAY_SECONDS)

    async def _listen_until_lost(self) -> None:
        lost = asyncio.Event()
        async with self._pool.acquire() as conn:
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(CHANNEL, self._on_notification)
            for hook in self._on_connect:
                await hook(conn)
            self._listening.set()
            try:
                await lost.wait()
            finally:
                self._listening.clear()
                if not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.remove_listener(CHANNEL, self._on_notification)
                        if self._on_connect:  # their session locks end with the LISTEN
                            await conn.execute("SELECT pg_advisory_unlock_all()")

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.received += 1
        queue_id, builtin, _ = payload.partition(BUILTIN_SUFFIX)
        for event in self._queue_waiters.get(queue_id, ()):
            event.set()
        if builtin:
            for handler in self._builtin_handlers:
                handler()

    def wake_all(self) -> None:
        for events in self._queue_waiters.values():
            for event in events:
                event.set()
        for handler in self._builtin_handlers:
            handler()

    @contextlib.contextmanager
    def watch_queues(self, queue_ids: Iterable[object]) -> Iterator[asyncio.Event]:
        """An event set when any of these queues gets ready work, for the `with` block's life."""
        event = asyncio.Event()
        keys = [str(q) for q in queue_ids]
        for key in keys:
            self._queue_waiters[key].add(event)
        try:
            yield event
        finally:
            for key in keys:
                waiters = self._queue_waiters.get(key)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._queue_waiters[key]

    @contextlib.contextmanager
    def on_builtin_work(self, handler: Callable[[], None]) -> Iterator[None]:
        """Call `handler` when built-in work becomes ready anywhere (the built-in pool decides
        how many of its runners to wake)."""
        self._builtin_handlers.append(handler)
        try:
            yield
        finally:
            self._builtin_handlers.remove(handler)
