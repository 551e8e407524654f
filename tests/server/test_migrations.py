"""Migrations are recorded exactly as sqlx records them."""

from __future__ import annotations

import hashlib

import asyncpg
import pytest

from reference_server.migrate import (
    MigrationError,
    apply_migrations,
    load_migrations,
    migration_status,
)


async def test_records_match_sqlx_format(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT * FROM _sqlx_migrations ORDER BY version")
        files = load_migrations()
        assert [r["version"] for r in rows] == [m.version for m in files]
        first = files[0]
        raw = (
            __import__("importlib.resources").resources.files("reference_server")
            / "migrations"
            / f"{first.version}_{first.description.replace(' ', '_')}.sql"
        ).read_bytes()
        assert bytes(rows[0]["checksum"]) == hashlib.sha384(raw).digest()
        assert rows[0]["description"] == "initial schema"
        assert rows[0]["success"] is True
        assert rows[0]["execution_time"] > 0
        status = await migration_status(conn)
        assert status.current and status.applied_version == files[-1].version
    finally:
        await conn.close()


async def test_second_run_applies_nothing(database_url: str) -> None:
    assert await apply_migrations(database_url) == []


async def test_changed_checksum_is_refused(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE _sqlx_migrations SET checksum = '\\x00'::bytea")
    finally:
        await conn.close()
    with pytest.raises(MigrationError, match="different checksum"):
        await apply_migrations(database_url)


async def test_status_of_an_empty_database_is_not_current(postgres_server) -> None:  # type: ignore[no-untyped-def]
    conn = await asyncpg.connect(postgres_server.url)
    try:
        status = await migration_status(conn)
        assert status.applied_version is None and not status.current
    finally:
        await conn.close()
