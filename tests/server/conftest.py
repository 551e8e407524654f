"""Fixtures of the server tests: a pool on the per-test database, an organisation in it, and a
PostgreSQL of one test's own for the tests that stop or hang the database."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from uuid import UUID

import asyncpg
import pytest
from engine_support import make_org, open_pool

from reference_server.devservices import DevServiceError, EmbeddedPostgres
from reference_server.migrate import apply_migrations


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(database_url)
    yield pool
    await pool.close()


@pytest.fixture
async def org(pool: asyncpg.Pool) -> UUID:
    return await make_org(pool)


@pytest.fixture
def private_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test alone, so stopping it harms no other test."""
    server = EmbeddedPostgres(durable=False).start()
    try:
        asyncio.run(apply_migrations(server.url))
        yield server
    finally:
        # A failed test must not leave it hung (SIGSTOP); one that paused it has no process left.
        with contextlib.suppress(DevServiceError):
            server.signal_group(signal.SIGCONT)
        server.stop()
