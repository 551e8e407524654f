"""The database behind the deployment: reachable, migrated, indexed, pooled, closed to outsiders.

Migrations are compared the way sqlx records them: `_sqlx_migrations` rows (version, SHA-384 of the
file) against a migrations folder (--migrations-dir, or the reference server's shipped folder).
"""

from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import psycopg

from conformance.checks.live.common import (
    LOOPBACK_HOSTS,
    Report,
    database_url_of,
    target_env,
    target_of,
)
from conformance.checks.live.http import host_of
from conformance.checks.live.queries import query
from conformance.checks.registry import check

if TYPE_CHECKING:
    from conformance.checks.registry import CheckContext
    from conformance.model import Finding

CONNECT_TIMEOUT_SECONDS = 5
PORT_PROBE_TIMEOUT_SECONDS = 3.0
MIN_POSTGRES_MAJOR = 13  # guide 2.1: PostgreSQL 13+
RECOMMENDED_POSTGRES_MAJOR = 14
_MIGRATION_FILE = re.compile(r"^(?P<version>\d+)_(?P<description>.+?)(?P<up>\.up)?\.sql$")
DB_ITEMS = ("LIVE-DB-REACHABLE", "LIVE-DB-VERSION", "LIVE-DB-MIGRATIONS")
UUID_ITEM = "LIVE-DB-UUID-EXTENSION"


@dataclass(frozen=True, kw_only=True, slots=True)
class MigrationFile:
    version: int
    name: str
    checksum: bytes


def reference_migrations_dir() -> Path | None:
    """The reference server's migrations folder, located without running any of its code."""
    spec = importlib.util.find_spec("reference_server")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "migrations"
    return folder if folder.is_dir() else None


def migration_files(folder: Path) -> list[MigrationFile]:
    """sqlx migration files (`<version>_<name>.sql` or `.up.sql`) and SHA-384s, oldest first."""
    found = []
    for path in folder.iterdir():
        match = _MIGRATION_FILE.match(path.name)
        if match and not path.name.endswith(".down.sql"):
            found.append(MigrationFile(
                version=int(match["version"]), name=path.name,
                checksum=hashlib.sha384(path.read_bytes()).digest(),
            ))
    return sorted(found, key=lambda m: m.version)


def migrations_dir_for(ctx: CheckContext) -> tuple[Path | None, str]:
    if ctx.migrations_dir is not None:
        return ctx.migrations_dir, "--migrations-dir"
    if target_of(ctx).is_reference:
        return reference_migrations_dir(), "the reference server's migrations"
    return None, ""


def compare_migrations(
    applied: list[tuple[int, bytes, bool]], files: list[MigrationFile]
) -> list[str]:
    """Problems between the recorded migrations and the files; empty when current."""
    problems = []
    recorded = {version: (checksum, success) for version, checksum, success in applied}
    for file in files:
        if file.version not in recorded:
            problems.append(f"{file.name} is not applied")
        elif not recorded[file.version][1]:
            problems.append(f"{file.name} is recorded as failed (dirty)")
        elif recorded[file.version][0] != file.checksum:
            problems.append(f"{file.name} was applied with a different checksum")
    known = {f.version for f in files}
    problems += [f"version {v} is applied but has no file" for v in recorded if v not in known]
    return problems


@check(*DB_ITEMS, needs=("target",))
def database(ctx: CheckContext) -> Iterator[Finding]:
    """The database answers, is PostgreSQL 13+, and its migrations match the files."""
    report = Report(f"{__name__}.database")
    url = database_url_of(ctx)
    if url is None:
        for item in DB_ITEMS:
            yield report.not_applicable(item, "no database URL: give --database-url")
        return
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        for item in DB_ITEMS:
            yield report.failed(item, f"cannot connect: {message}")
        return
    with conn:
        version_row = conn.execute(query("server_version")).fetchone()
        has_table = conn.execute(query("table_exists"), {"name": "_sqlx_migrations"}).fetchone()
        applied = (
            [(int(v), bytes(c), bool(s)) for v, _, c, s in conn.execute(query("sqlx_applied"))]
            if has_table and has_table[0] else None
        )
    assert version_row is not None
    version_num, version_text = int(version_row[0]), str(version_row[1])
    yield report.passed("LIVE-DB-REACHABLE", f"connected: {version_text.split(',')[0]}")
    major = version_num // 10000
    if major < MIN_POSTGRES_MAJOR:
        yield report.failed(
            "LIVE-DB-VERSION", f"PostgreSQL {major} is older than {MIN_POSTGRES_MAJOR}",
            expected=f">= {MIN_POSTGRES_MAJOR}", actual=str(major),
        )
    else:
        note = "" if major >= RECOMMENDED_POSTGRES_MAJOR else \
            f" (the guide recommends {RECOMMENDED_POSTGRES_MAJOR}+)"
        yield report.passed("LIVE-DB-VERSION", f"PostgreSQL {major}{note}")

    if applied is None:
        yield report.failed(
            "LIVE-DB-MIGRATIONS", "no _sqlx_migrations table: migrations never ran",
            expected="_sqlx_migrations with every migration", actual="absent",
        )
        return
    folder, origin = migrations_dir_for(ctx)
    if folder is None:
        dirty = [v for v, _, ok in applied if not ok]
        if dirty:
            yield report.failed("LIVE-DB-MIGRATIONS", f"migrations recorded as failed: {dirty}")
        else:
            yield report.passed(
                "LIVE-DB-MIGRATIONS",
                f"{len(applied)} migrations applied, none failed (give --migrations-dir to "
                "compare them with the release's files)",
            )
        return
    files = migration_files(folder)
    problems = compare_migrations(applied, files)
    if not files:
        problems.append(f"{folder} holds no migration files")
    if problems:
        yield report.failed(
            "LIVE-DB-MIGRATIONS", "; ".join(problems),
            expected=f"every file of {origin} applied with its checksum",
            actual=f"{len(applied)} recorded, {len(files)} files",
        )
    else:
        yield report.passed(
            "LIVE-DB-MIGRATIONS",
            f"all {len(files)} migrations of {origin} applied, checksums equal "
            f"(latest {files[-1].version})",
        )


@check(UUID_ITEM, needs=("database_url",))
def uuid_extension(ctx: CheckContext) -> Iterator[Finding]:
    """uuid-ossp (guide 4.2 step 5) is installed where the schema calls its functions.

    Whether the schema needs it is read from the database itself: column defaults, views and
    function bodies that call uuid_generate_v*() or uuid_ns_*(). A schema calling none of them
    needs no extension (ids from gen_random_uuid() are PostgreSQL's own since 13); an empty
    schema says nothing either way.
    """
    report = Report(f"{__name__}.uuid_extension")
    url = database_url_of(ctx)
    assert url is not None
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        yield report.failed(UUID_ITEM, f"cannot connect: {message}")
        return
    with conn:
        installed = conn.execute(query("uuid_ossp_installed")).fetchone()
        users = [f"{kind} {name}" for kind, name in conn.execute(query("uuid_ossp_users"))]
        available_row = conn.execute(query("uuid_ossp_available")).fetchone()
        objects_row = conn.execute(query("user_schema_objects")).fetchone()
    needed = f"; the schema calls it from {', '.join(users)}" if users else ""
    if installed is not None:
        yield report.passed(
            UUID_ITEM, f"uuid-ossp {installed[0]} is installed (schema {installed[1]}){needed}",
        )
    elif users:
        offered = bool(available_row and available_row[0])
        yield report.failed(
            UUID_ITEM,
            f"uuid-ossp is not installed, but the schema calls its functions ({', '.join(users)}): "
            "each call fails with \"function ... does not exist\""
            + ("" if offered else "; and this server does not offer the extension (no contrib "
               "modules: install them, e.g. Debian's postgresql-contrib)"),
            expected='CREATE EXTENSION IF NOT EXISTS "uuid-ossp" (guide 4.2 step 5), in a '
            "migration",
            actual="not installed",
        )
    elif objects_row is None or int(objects_row[0]) == 0:
        yield report.not_applicable(
            UUID_ITEM,
            "the database holds no table or view yet: whether the schema needs uuid-ossp shows "
            "once the migrations ran (LIVE-DB-MIGRATIONS)",
        )
    else:
        yield report.passed(
            UUID_ITEM,
            f"uuid-ossp is not installed and not needed: none of the {int(objects_row[0])} "
            "tables and views, their column defaults or the schema's functions calls a "
            "uuid-ossp function (gen_random_uuid() is built in)",
        )


def ready_queue_indexes(indexes: list[tuple[str, str]]) -> list[str]:
    """Indexes on jobs that serve the dequeue: they involve the status (key or predicate)."""
    return [name for name, definition in indexes if re.search(r"\bstatus\b", definition)]


@check("LIVE-DB-INDEXES", "LIVE-DB-POOL", needs=("target",))
def performance(ctx: CheckContext) -> Iterator[Finding]:
    """A ready-queue index on jobs; the app holds pooled connections under the server's limit."""
    report = Report(f"{__name__}.performance")
    url = database_url_of(ctx)
    if url is None:
        for item in ("LIVE-DB-INDEXES", "LIVE-DB-POOL"):
            yield report.not_applicable(item, "no database URL: give --database-url")
        return
    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
        indexes = [(str(n), str(d)) for n, d in conn.execute(query("job_indexes"))]
        row = conn.execute(query("connections")).fetchone()
    assert row is not None
    app_connections, max_connections = int(row[0]), int(row[1])
    ready = ready_queue_indexes(indexes)
    if ready:
        yield report.passed(
            "LIVE-DB-INDEXES",
            f"ready-queue index(es) on jobs: {', '.join(ready)} ({len(indexes)} indexes in all)",
        )
    else:
        yield report.failed(
            "LIVE-DB-INDEXES",
            "no index on jobs covers the status the dequeue filters on"
            + ("" if indexes else " (no table jobs, or no index at all)"),
            expected="an index such as (queue_id, priority DESC, seq) WHERE status IN (...)",
            actual=", ".join(n for n, _ in indexes) or "none",
        )
    if app_connections == 0:
        yield report.failed(
            "LIVE-DB-POOL", "no open connection to the database: the app keeps no pool",
            expected="connections held by the app's pool", actual="0",
        )
    elif app_connections >= max_connections:
        yield report.failed(
            "LIVE-DB-POOL",
            f"{app_connections} connections reach max_connections {max_connections}",
            expected=f"< {max_connections}", actual=str(app_connections),
        )
    else:
        yield report.passed(
            "LIVE-DB-POOL",
            f"{app_connections} pooled connections open, under max_connections {max_connections}",
        )


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@check("LIVE-DB-PORT-CLOSED", needs=("target",))
def port_closed(ctx: CheckContext) -> Iterator[Finding]:
    """The PostgreSQL port does not answer on the target host's public address."""
    report = Report(f"{__name__}.port_closed")
    target = target_of(ctx)
    host = host_of(target.base_url)
    # --resolve names the machine behind the name: its database port is probed there.
    host = next((a for (h, _), a in target.resolve_map.items() if h == host), host)
    url = database_url_of(ctx)
    env = target_env(ctx)
    # The URL's port counts only when it names the target host (not a tunnel or a proxy).
    url_port = urlsplit(url).port if url and host_of(url) == host else None
    port = url_port or int(env.get("DB_PORT", "5432") or 5432)
    if _is_loopback(host):
        # Nothing to probe "from outside" on this machine: report what the configuration exposes.
        db_host = host_of(url) if url else None
        if db_host is not None and _is_loopback(db_host):
            yield report.passed(
                "LIVE-DB-PORT-CLOSED",
                f"loopback target: the database is reached on {db_host}:{port}, a loopback "
                "address only; probe from another machine with --target-url for a public check",
            )
        else:
            yield report.skipped(
                "LIVE-DB-PORT-CLOSED",
                f"loopback target; the database is at {db_host or 'an unknown host'}: "
                "run against the public --target-url to probe its port",
            )
        return
    try:
        with socket.create_connection((host, port), PORT_PROBE_TIMEOUT_SECONDS):
            open_ = True
    except OSError:
        open_ = False
    if open_:
        yield report.failed(
            "LIVE-DB-PORT-CLOSED", f"{host}:{port} accepts TCP connections from this machine",
            expected="connection refused or filtered", actual="open",
        )
    else:
        yield report.passed("LIVE-DB-PORT-CLOSED", f"{host}:{port} refuses connections")
