"""The server's asyncpg pool, every wait on it bounded: a hung database (sockets open, nothing
answering) or a burst larger than the pool is a 503 within seconds, not requests piling up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

#: Longest wait for a pooled connection; then TimeoutError, which the HTTP layer answers 503.
ACQUIRE_TIMEOUT_SECONDS = 3.0
#: Longest wait for one statement's answer (the caller may give a longer one for its own). A
#: submit waiting in the group commit behind a stuck statement waits up to twice this: with the
#: database hung, a request waits at most about 12 s (chaos CHAOS-DATABASE-HANG: 15 s).
COMMAND_TIMEOUT_SECONDS = 3.0
#: Longest wait to open a connection.
CONNECT_TIMEOUT_SECONDS = 10.0


class BoundedPool(asyncpg.Pool):  # type: ignore[misc]
    """asyncpg's pool with a default acquire timeout (asyncpg's own default waits forever)."""

    __slots__ = ("_acquire_timeout",)

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        return super().acquire(timeout=self._acquire_timeout if timeout is None else timeout)


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
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        timeout=CONNECT_TIMEOUT_SECONDS,
        command_timeout=COMMAND_TIMEOUT_SECONDS,
    )
    await pool
    return pool
