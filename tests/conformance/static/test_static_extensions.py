"""DB-UUID-EXTENSION: uuid-ossp created where the migrations run, not only by hand (guide 4.2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from static_helpers import REPO, run_checks

from conformance.model import Status

USES = "CREATE TABLE jobs (id UUID PRIMARY KEY DEFAULT uuid_generate_v4());\n"
CREATES = 'CREATE EXTENSION IF NOT EXISTS "uuid-ossp";\n'


def judge(tmp_path: Path, first: str, init_script: str | None = None) -> tuple[Status, int | None]:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "20260101000001_initial.sql").write_text(first)
    compose = None
    if init_script is not None:
        (tmp_path / "init").mkdir()
        (tmp_path / "init" / "01-extensions.sql").write_text(init_script)
        compose = tmp_path / "docker-compose.prod.yml"
        compose.write_text("services:\n  db:\n    image: postgres:16-alpine\n    volumes:\n"
                           "      - ./init:/docker-entrypoint-initdb.d:ro\n")
    (finding,) = run_checks(("DB-UUID-EXTENSION",), migrations_dir=migrations,
                            compose_file=compose)
    return finding.status, finding.evidence[0].line if finding.evidence else None


@pytest.mark.parametrize(
    ("first", "init_script", "status"),
    [
        (USES, None, Status.FAILED),  # the guide's way: created by hand only
        (CREATES + USES, None, Status.PASSED),
        (USES, CREATES, Status.PASSED),
        ("CREATE TABLE t (id UUID DEFAULT gen_random_uuid());\n", None, Status.PASSED),
    ],
)
def test_uuid_ossp_created_where_it_is_used(
    tmp_path: Path, first: str, init_script: str | None, status: Status
) -> None:
    found, line = judge(tmp_path, first, init_script)
    assert found is status
    if status is Status.FAILED:
        assert line == 1


def test_reference_migrations_need_no_extension() -> None:
    (finding,) = run_checks(("DB-UUID-EXTENSION",),
                            migrations_dir=REPO / "reference_server" / "migrations")
    assert finding.status is Status.PASSED
