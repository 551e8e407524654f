"""Fixtures of the server tests: a pool on the per-test database and an organisation in it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID

import asyncpg
import pytest
from engine_support import make_org, open_pool


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(database_url)
    yield pool
    await pool.close()


@pytest.fixture
async def org(pool: asyncpg.Pool) -> UUID:
    return await make_org(pool)
