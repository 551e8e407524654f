"""The backup-and-restore drill (guide 6.3, 7, 8.2, 10), on the reference stack only.

pg_dump takes a plain SQL dump as section 10.1 does, psql restores it into a scratch database as
sections 7 and 10.2 do, and every table's row count is compared with the source, read in the very
snapshot the dump was taken from (so a busy server cannot make the counts differ).
"""

from __future__ import annotations

import importlib.util
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from conformance.checks.live.common import Report, database_url_of, target_of
from conformance.checks.live.queries import query
from conformance.checks.registry import check
from conformance.model import Evidence

if TYPE_CHECKING:
    from conformance.checks.registry import CheckContext
    from conformance.model import Finding

TOOL_TIMEOUT_SECONDS = 120.0
BACKUP_ITEMS = (
    "LIVE-BACKUP-DUMP", "LIVE-BACKUP-RESTORE", "LIVE-RECOVERY-DRILL", "LIVE-ROLLBACK-RESTORE",
    "LIVE-BACKUP-MANUAL",
)


class DrillError(RuntimeError):
    def __init__(self, step: str, message: str, evidence: Evidence | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.evidence = evidence


def client_bin_dirs() -> list[Path]:
    """Where PostgreSQL client tools may be: the embedded provider's pgserver first, then PATH."""
    dirs = []
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        dirs.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    for name in ("pg_dump",):
        found = shutil.which(name)
        if found:
            dirs.append(Path(found).parent)
    return [d for d in dirs if (d / "pg_dump").is_file() and (d / "psql").is_file()]


def tool_major(binary: Path) -> int:
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
    match = re.search(r"(\d+)(?:\.\d+)?", result.stdout)
    return int(match.group(1)) if match else 0


def pick_bin_dir(server_major: int) -> Path:
    """A client at least as new as the server: pg_dump refuses newer servers."""
    for directory in client_bin_dirs():
        if tool_major(directory / "pg_dump") >= server_major:
            return directory
    raise DrillError(
        "dump", f"no pg_dump and psql of version {server_major} or newer (pgserver or PATH)"
    )


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":<redacted>@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _run(step: str, argv: list[str], shown: str) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        raise DrillError(step, f"{shown} took longer than {TOOL_TIMEOUT_SECONDS:.0f}s") from None
    if result.returncode != 0:
        raise DrillError(
            step, f"{shown} exited {result.returncode}",
            Evidence(kind="command", command=shown, output=result.stderr.strip()[-800:]),
        )


def count_rows(conn: psycopg.Connection[tuple[Any, ...]]) -> dict[str, int]:
    counts = {}
    for schema, table in conn.execute(query("user_tables")).fetchall():
        name = sql.Identifier(str(schema), str(table))
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    return counts


def drill(database_url: str, workdir: Path) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """Dump, restore into a scratch database, count; (source counts, restored counts, commands)."""
    scratch = f"conformance_restore_{secrets.token_hex(6)}"
    scratch_url = with_database(database_url, scratch)
    dump_file = workdir / "backup.sql"
    commands: list[str] = []
    with psycopg.connect(database_url, connect_timeout=5) as source:
        # One REPEATABLE READ transaction exports the snapshot pg_dump reads and that we count in.
        source.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        row = source.execute(query("export_snapshot")).fetchone()
        assert row is not None
        snapshot = str(row[0])
        version = source.execute(query("server_version")).fetchone()
        assert version is not None
        bin_dir = pick_bin_dir(int(version[0]) // 10000)
        shown = f"pg_dump --no-owner --no-privileges -d {redact_url(database_url)} -f {dump_file}"
        _run("dump", [str(bin_dir / "pg_dump"), "--no-owner", "--no-privileges",
                      f"--snapshot={snapshot}", "-d", database_url, "-f", str(dump_file)], shown)
        commands.append(shown)
        source_counts = count_rows(source)
        source.rollback()
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
        try:
            shown = f"psql -v ON_ERROR_STOP=1 -d {redact_url(scratch_url)} -f {dump_file}"
            _run("restore", [str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                             "-d", scratch_url, "-f", str(dump_file)], shown)
            commands.append(shown)
            with psycopg.connect(scratch_url, autocommit=True, connect_timeout=5) as restored:
                restored_counts = count_rows(restored)
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch))
            )
    return source_counts, restored_counts, commands


@check(*BACKUP_ITEMS, needs=("target",))
def backup_restore(ctx: CheckContext) -> Iterator[Finding]:
    """pg_dump the database, restore it into a scratch database, compare every table's row count."""
    report = Report(f"{__name__}.backup_restore")
    if not target_of(ctx).is_reference:
        for item in BACKUP_ITEMS:
            yield report.not_applicable(
                item, "the restore drill runs on the reference stack only (it creates a database)"
            )
        return
    url = database_url_of(ctx)
    if url is None:
        for item in BACKUP_ITEMS:
            yield report.not_applicable(item, "no database URL")
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="conformance-backup-") as workdir:
        try:
            source, restored, commands = drill(url, Path(workdir))
        except DrillError as exc:
            attached = (exc.evidence,) if exc.evidence else ()
            dump_failed = exc.step == "dump"
            for item in BACKUP_ITEMS:
                if item == "LIVE-BACKUP-DUMP" and not dump_failed:
                    yield report.passed(item, "pg_dump succeeded")
                else:
                    yield report.failed(item, f"{exc.step} failed: {exc}", *attached)
            return
    evidence = Evidence(
        kind="command", summary=f"drill took {time.monotonic() - started:.1f}s",
        command="\n".join(commands),
    )
    different = {
        table: (source.get(table), restored.get(table))
        for table in sorted(set(source) | set(restored))
        if source.get(table) != restored.get(table)
    }
    total = sum(source.values())
    yield report.passed(
        "LIVE-BACKUP-DUMP", f"pg_dump wrote a plain SQL dump of {len(source)} tables", evidence
    )
    if different:
        shown = ", ".join(f"{t}: {a} vs {b}" for t, (a, b) in list(different.items())[:5])
        for item in BACKUP_ITEMS[1:]:
            yield report.failed(
                item, f"restored row counts differ: {shown}", evidence,
                expected="equal row counts in every table", actual=shown,
            )
        return
    message = f"restored into a scratch database: {len(source)} tables, {total} rows, all equal"
    for item in BACKUP_ITEMS[1:]:
        yield report.passed(item, message, evidence)
