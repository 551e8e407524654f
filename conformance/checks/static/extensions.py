"""DB-UUID-EXTENSION (guide 4.2 step 5): the uuid-ossp extension the migrations rely on is
created by a migration or an init script, not only by the guide's manual psql command.

The migrations are read as data (--migrations-dir); init scripts are the .sql files of the
directory the database service mounts at /docker-entrypoint-initdb.d (run on first start only).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from conformance.checks.registry import CheckContext
from conformance.checks.static.base import NotApplicable, Problem, static_check
from conformance.checks.static.composefile import (
    each_service,
    is_postgres,
    load_compose,
    volume_sources,
)

#: Functions of the uuid-ossp extension (PostgreSQL's own gen_random_uuid() needs none).
UUID_OSSP_FUNCTION = re.compile(r"\buuid_generate_v[1345](mc)?\s*\(|\buuid_ns_\w+\s*\(", re.I)
CREATES_UUID_OSSP = re.compile(r"create\s+extension\s+(if\s+not\s+exists\s+)?\"?uuid-ossp\"?",
                               re.I)


def _sql_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.sql") if not p.name.endswith(".down.sql"))


def _init_scripts(context: CheckContext) -> list[Path]:
    if context.compose_file is None:
        return []
    compose = load_compose(context)
    scripts: list[Path] = []
    for _name, service in each_service(compose):
        if not is_postgres(service):
            continue
        for source, target, _line in volume_sources(service):
            if target.rstrip("/") == "/docker-entrypoint-initdb.d" and source.startswith("."):
                folder = (compose.path.parent / source).resolve()
                scripts += _sql_files(folder) if folder.is_dir() else []
    return scripts


@static_check(
    "DB-UUID-EXTENSION", needs=("migrations_dir",),
    ok="the uuid-ossp functions the migrations use are created by a migration or init script",
)
def uuid_extension(context: CheckContext) -> Iterator[Problem]:
    assert context.migrations_dir is not None
    migrations = _sql_files(context.migrations_dir)
    if not migrations:
        raise NotApplicable(f"no .sql migration in {context.migrations_dir}")
    users: list[tuple[Path, int]] = []
    for path in migrations:
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if UUID_OSSP_FUNCTION.search(text.split("--", 1)[0]):
                users.append((path, number))
    if not users:
        return  # gen_random_uuid() and the like need no extension
    sources = migrations + _init_scripts(context)
    if any(CREATES_UUID_OSSP.search(p.read_text(encoding="utf-8")) for p in sources):
        return
    path, line = users[0]
    yield Problem(
        message=f"{path.name} calls a uuid-ossp function, but no migration or init script "
        "creates the extension: only guide 4.2 step 5's manual `psql ... CREATE EXTENSION` does, "
        "so a database set up any other way (a restore, a new replica, a test) fails the "
        "migration", file=path, line=line,
        expected='CREATE EXTENSION IF NOT EXISTS "uuid-ossp"; in the first migration',
        actual="created by hand only",
    )
