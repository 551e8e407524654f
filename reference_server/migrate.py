"""Schema migrations, recorded the way sqlx records them.

Files are `migrations/<version>_<description>.sql`. Each applied file gets a row in
`_sqlx_migrations` with the SHA-384 of its bytes, so `sqlx migrate run` and
`python -m reference_server migrate` can take turns on the same database.
"""

from __future__ import annotations

import hashlib
import re
import time
import zlib
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from collections.abc import Sequence

FILENAME = re.compile(r"^(?P<version>\d+)_(?P<description>.+)\.sql$")

CREATE_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
)
"""
APPLIED_SQL = "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version"
RECORD_SQL = """
INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
VALUES ($1, $2, TRUE, $3, $4)
"""


class MigrationError(RuntimeError):
    """The database's migration history disagrees with the files."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Migration:
    version: int
    description: str
    sql: str
    checksum: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class MigrationStatus:
    applied_version: int | None
    latest_version: int
    current: bool


def load_migrations() -> list[Migration]:
    """The migration files shipped with the package, oldest first."""
    found = []
    for entry in resources.files("reference_server").joinpath("migrations").iterdir():
        match = FILENAME.match(entry.name)
        if not match:
            continue
        raw = entry.read_bytes()
        found.append(
            Migration(
                version=int(match["version"]),
                # sqlx shows the file name's words, underscores as spaces.
                description=match["description"].replace("_", " "),
                sql=raw.decode(),
                checksum=hashlib.sha384(raw).digest(),
            )
        )
    return sorted(found, key=lambda m: m.version)


def sqlx_lock_id(database_name: str) -> int:
    """The advisory lock key sqlx takes, so both tools exclude each other."""
    return 0x3D32AD9E * zlib.crc32(database_name.encode())


async def _apply(conn: asyncpg.Connection, migrations: Sequence[Migration]) -> list[Migration]:
    await conn.execute(CREATE_TABLE_SQL)
    rows = await conn.fetch(APPLIED_SQL)
    applied = {row["version"]: row for row in rows}
    known = {m.version: m for m in migrations}
    for version, row in applied.items():
        if not row["success"]:
            raise MigrationError(f"migration {version} is partially applied (dirty)")
        if version in known and bytes(row["checksum"]) != known[version].checksum:
            raise MigrationError(f"migration {version} was applied with a different checksum")
        if version not in known:
            raise MigrationError(f"migration {version} is applied but its file is missing")
    done = []
    for migration in migrations:
        if migration.version in applied:
            continue
        started = time.perf_counter_ns()
        async with conn.transaction():
            await conn.execute(migration.sql)
            elapsed = time.perf_counter_ns() - started
            await conn.execute(
                RECORD_SQL, migration.version, migration.description, migration.checksum, elapsed
            )
        done.append(migration)
    return done


async def apply_migrations(dsn: str) -> list[Migration]:
    """Apply pending migrations under sqlx's advisory lock; return the ones applied."""
    conn = await asyncpg.connect(dsn)
    try:
        database = await conn.fetchval("SELECT current_database()")
        lock = sqlx_lock_id(database)
        await conn.execute("SELECT pg_advisory_lock($1)", lock)
        try:
            return await _apply(conn, load_migrations())
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock)
    finally:
        await conn.close()


async def migration_status(conn: asyncpg.Connection) -> MigrationStatus:
    """Which version the database is at, and whether it is the newest file's."""
    latest = load_migrations()[-1].version
    exists = await conn.fetchval("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
    applied = (
        await conn.fetchval("SELECT max(version) FROM _sqlx_migrations WHERE success")
        if exists
        else None
    )
    return MigrationStatus(
        applied_version=applied, latest_version=latest, current=applied == latest
    )
