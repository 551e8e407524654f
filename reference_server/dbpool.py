"""The server's asyncpg pool, every wait on it bounded: a hung database (sockets open, nothing
answering) or a burst larger than the pool is a 503 within seconds, not requests piling up."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import asyncpg
import asyncpg.transaction

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType

#: Longest wait for a pooled connection; then TimeoutError, which the HTTP layer answers 503.
ACQUIRE_TIMEOUT_SECONDS = 3.0
#: Longest wait for one statement's answer (the caller may give a longer one for its own). With
#: the database hung a request waits for a connection or for one statement, then is answered
#: 503: neither a rollback nor the group commit adds a second wait (chaos
#: CHAOS-DATABASE-HANG: 8 s; tests/server/test_database_stall.py).
COMMAND_TIMEOUT_SECONDS = 3.0
#: Longest wait to open a connection.
CONNECT_TIMEOUT_SECONDS = 10.0
#: After a statement got no answer in time, how long its connection may take to acknowledge the
#: cancel and roll back before it is closed instead. A live database does both in milliseconds;
#: a hung one never does, and asyncpg would otherwise wait a further command timeout for each.
ABANDON_AFTER_SECONDS = 0.5

#: Errors meaning "the database is not there (or not now)": answered 503 with Retry-After.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,  # a pooled connection or a statement's answer not within its bound
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    # Statement cancelled (statement_timeout, or asyncpg's own cancel racing a statement that
    # was finishing), shutting down, restarting, not yet accepting connections: all transient.
    asyncpg.OperatorInterventionError,
    # A connection dying mid-operation can leave asyncpg's protocol state confused ("cannot
    # switch to state ..."): seen when PostgreSQL stops under load; transient, so 503.
    asyncpg.InternalClientError,
)
#: ... of which these are the client's own: the database did not answer at all, so waiting for
#: it to roll back or to acknowledge a cancel is waiting again.
_NO_ANSWER: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)


def _chain(exc: BaseException) -> list[BaseException]:
    """The error and what caused it (a few links: a 503 hidden behind a wrapper is still one)."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(found) < 5:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def database_unavailable(exc: BaseException) -> bool:
    """The database is down, hung, or its pool exhausted: a 503, never the data's fault."""
    return any(isinstance(e, _UNAVAILABLE) for e in _chain(exc))


def no_answer(exc: BaseException | None) -> bool:
    return exc is not None and any(isinstance(e, _NO_ANSWER) for e in _chain(exc))


class _Transaction(asyncpg.transaction.Transaction):  # type: ignore[misc]
    """A transaction that, when the database did not answer, leaves its rollback to the pool's
    release (bounded by ABANDON_AFTER_SECONDS, then the connection is closed, which PostgreSQL
    rolls back) instead of waiting a further command timeout for it."""

    async def __aexit__(
        self,
        extype: type[BaseException] | None,
        ex: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if no_answer(ex):
            return  # the error goes on; _Acquire releases (or closes) the connection
        await super().__aexit__(extype, ex, tb)


class BoundedConnection(asyncpg.Connection):  # type: ignore[misc]
    def transaction(
        self, *, isolation: str | None = None, readonly: bool = False, deferrable: bool = False
    ) -> asyncpg.transaction.Transaction:
        if self.is_closed():
            raise asyncpg.InterfaceError("connection is closed")
        return _Transaction(self, isolation, readonly, deferrable)


class _Acquire:
    """`async with pool.acquire()`: when the block failed because the database did not answer,
    the connection gets ABANDON_AFTER_SECONDS to settle its cancel and roll back, then it is
    closed (asyncpg's release would wait the acquire timeout again). `await` it as asyncpg's."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner  # asyncpg's PoolAcquireContext

    async def __aenter__(self) -> Any:
        return await self._inner.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        inner = self._inner
        if no_answer(exc_val) and inner.connection is not None:
            # Closed on failure by asyncpg itself; the caller's error is the one that matters.
            with contextlib.suppress(Exception):
                await inner.pool.release(inner.connection, timeout=ABANDON_AFTER_SECONDS)
        await inner.__aexit__(exc_type, exc_val, exc_tb)  # released already: nothing to do

    def __await__(self) -> Any:
        return self._inner.__await__()


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]
    """asyncpg's pool with a default acquire timeout (asyncpg's own default waits forever), and
    no second wait on a connection whose database did not answer."""

    __slots__ = ("_acquire_timeout",)

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        bound = self._acquire_timeout if timeout is None else timeout
        return _Acquire(super().acquire(timeout=bound))


async def open_pool(
    dsn: str,
    *,
    min_size: int,
    max_size: int,
    reset: Callable[[asyncpg.Connection], Awaitable[None]] | None = None,
) -> asyncpg.Pool:
    pool = BoundedPool(
        dsn,
        acquire_timeout=ACQUIRE_TIMEOUT_SECONDS,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        reset=reset,
        loop=None,
        connection_class=BoundedConnection,
        record_class=asyncpg.Record,
        timeout=CONNECT_TIMEOUT_SECONDS,
        command_timeout=COMMAND_TIMEOUT_SECONDS,
    )
    await pool
    return pool
