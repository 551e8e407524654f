"""Shared fixtures: real PostgreSQL and Redis from pip binaries, one pair per test process.

The schema is migrated once into a template database; each test gets a clone of it
(`CREATE DATABASE ... TEMPLATE`, as procrastinate's tests do) and a flushed Redis database.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator

import psycopg
import pytest
import redis

from reference_server.devservices import EmbeddedPostgres, EmbeddedRedis
from reference_server.migrate import apply_migrations

TEMPLATE_DB = "taskforge_template"
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(durable=False).start()
    try:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        asyncio.run(apply_migrations(server.url_for(TEMPLATE_DB)))
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def database_url(postgres_server: EmbeddedPostgres) -> Iterator[str]:
    """A freshly migrated database of its own for this test."""
    name = f"test_{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    yield postgres_server.url_for(name)
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The Redis server with its database flushed, so no test sees another's keys."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    client.close()
    return redis_server.url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Lines a passing test recorded as `ci_log` property, shown at the end of the run's log.

    The docker stack tests say there which provider ran, that its containers were healthy, that
    the smoke sequence passed and that no container was left behind (also across xdist workers,
    which ship user_properties back with their reports).
    """
    lines = [str(line) for report in terminalreporter.stats.get("passed", [])
             for name, value in getattr(report, "user_properties", ())
             if name == "ci_log" for line in value]
    if lines:
        terminalreporter.section("reference stack")
        for line in lines:
            terminalreporter.write_line(line)
