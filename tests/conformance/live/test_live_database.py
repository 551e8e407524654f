"""Database, Redis and backup checks on real PostgreSQL and Redis, tampered one way at a time.

No HTTP server is needed: these checks talk SQL and the Redis protocol only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from live_support import docker_client, run_checks, statuses

from conformance.checks.live.database import compare_migrations, migration_files
from conformance.checks.registry import CheckContext
from conformance.model import Finding, Status
from conformance.stack import Target
from reference_server.devservices import EmbeddedPostgres, EmbeddedRedis

# Never contacted: these checks read the database and Redis URLs only.
UNUSED_URL = "https://127.0.0.1:9"


def context(database_url: str | None = None, redis_url: str | None = None, *,
            reference: bool = True, migrations_dir: Path | None = None) -> CheckContext:
    target = Target(base_url=UNUSED_URL, provider="external", is_reference=reference,
                    database_url=database_url, redis_url=redis_url)
    return CheckContext(target=target, migrations_dir=migrations_dir)


def test_migrations_current_and_database_reachable(database_url: str) -> None:
    result = statuses(run_checks(context(database_url), "database.database"))
    assert result == {
        "LIVE-DB-REACHABLE": Status.PASSED,
        "LIVE-DB-VERSION": Status.PASSED,
        "LIVE-DB-MIGRATIONS": Status.PASSED,
    }


def test_a_changed_checksum_fails_the_migrations(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE _sqlx_migrations SET checksum = '\\x00'::bytea "
                     "WHERE version = (SELECT min(version) FROM _sqlx_migrations)")
    findings = run_checks(context(database_url), "database.database")
    assert statuses(findings)["LIVE-DB-MIGRATIONS"] is Status.FAILED
    assert "different checksum" in next(
        f.message for f in findings if f.item_id == "LIVE-DB-MIGRATIONS"
    )


def test_a_pending_migration_fails_the_migrations(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM _sqlx_migrations "
                     "WHERE version = (SELECT max(version) FROM _sqlx_migrations)")
    findings = run_checks(context(database_url), "database.database")
    result = statuses(findings)
    assert result["LIVE-DB-MIGRATIONS"] is Status.FAILED
    assert result["LIVE-DB-REACHABLE"] is Status.PASSED


def test_a_foreign_target_without_migrations_dir_checks_only_for_failures(
    database_url: str,
) -> None:
    findings = run_checks(context(database_url, reference=False), "database.database")
    migrations = next(f for f in findings if f.item_id == "LIVE-DB-MIGRATIONS")
    assert migrations.status is Status.PASSED
    assert "--migrations-dir" in migrations.message


def test_an_empty_migrations_dir_fails(database_url: str, tmp_path: Path) -> None:
    findings = run_checks(
        context(database_url, reference=False, migrations_dir=tmp_path), "database.database"
    )
    assert statuses(findings)["LIVE-DB-MIGRATIONS"] is Status.FAILED


def test_compare_migrations_names_each_problem(tmp_path: Path) -> None:
    folder = tmp_path
    (folder / "1_first.sql").write_text("SELECT 1;")
    (folder / "2_second.up.sql").write_text("SELECT 2;")
    (folder / "2_second.down.sql").write_text("SELECT 0;")
    files = migration_files(folder)
    assert [f.version for f in files] == [1, 2]
    applied = [(1, b"wrong", True), (3, b"x", True)]
    assert compare_migrations(applied, files) == [
        "1_first.sql was applied with a different checksum",
        "2_second.up.sql is not applied",
        "version 3 is applied but has no file",
    ]
    assert compare_migrations([(f.version, f.checksum, True) for f in files], files) == []


def test_without_the_ready_queue_index_indexing_fails(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        for (name,) in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'jobs' AND indexdef ~ 'status'"
        ).fetchall():
            conn.execute(f'DROP INDEX "{name}"')
    result = statuses(run_checks(context(database_url), "database.performance"))
    assert result["LIVE-DB-INDEXES"] is Status.FAILED


def test_without_an_app_pool_pooling_fails(database_url: str) -> None:
    # Nothing but the check itself is connected to this fresh database: no pool holds it.
    result = statuses(run_checks(context(database_url), "database.performance"))
    assert result == {"LIVE-DB-INDEXES": Status.PASSED, "LIVE-DB-POOL": Status.FAILED}


def test_an_unreachable_database_fails_each_item_with_one_line() -> None:
    findings = run_checks(
        context("postgresql://nobody@127.0.0.1:9/none"), "database.database"
    )
    assert {f.status for f in findings} == {Status.FAILED}
    assert all("\n" not in f.message for f in findings)


def test_the_backup_drill_restores_equal_row_counts(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO organizations (name) VALUES ('drill'), ('drill 2')")
    findings = run_checks(context(database_url), "backup.backup_restore")
    assert {f.status for f in findings} == {Status.PASSED}, findings
    with psycopg.connect(database_url, autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'conformance_restore_%'"
        ).fetchone()
    assert left == (0,)  # the scratch database is dropped


def test_the_backup_drill_never_runs_on_a_foreign_target(database_url: str) -> None:
    findings = run_checks(context(database_url, reference=False), "backup.backup_restore")
    assert {f.status for f in findings} == {Status.NOT_APPLICABLE}


@pytest.fixture
def evicting_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of its own, so that changing its policy cannot touch other tests."""
    server = EmbeddedRedis().start()
    try:
        yield server
    finally:
        server.stop()


def test_redis_checks_pass_on_the_embedded_redis(redis_url: str) -> None:
    result = statuses(run_checks(context(redis_url=redis_url), "redis.redis_server"))
    assert set(result.values()) == {Status.PASSED}, result


def test_an_evicting_redis_fails_the_eviction_policy(evicting_redis: EmbeddedRedis) -> None:
    import redis

    client = redis.Redis.from_url(evicting_redis.url)
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.close()
    result = statuses(run_checks(context(redis_url=evicting_redis.url), "redis.redis_server"))
    assert result == {
        "LIVE-REDIS": Status.PASSED,
        "LIVE-REDIS-VERSION": Status.PASSED,
        "LIVE-REDIS-EVICTION": Status.FAILED,
    }


def test_without_urls_the_checks_are_not_applicable() -> None:
    findings = run_checks(
        context(), "database.database", "database.performance", "redis.redis_server"
    )
    assert {f.status for f in findings} == {Status.NOT_APPLICABLE}


# --- LIVE-DB-UUID-EXTENSION: uuid-ossp where the schema calls it (guide 4.2 step 5) ---------------

UUID_ITEM = "LIVE-DB-UUID-EXTENSION"
#: A plpgsql body is not resolved at CREATE time: it can call a function nobody installed.
NEEDS_UUID_OSSP = """
CREATE FUNCTION new_job_id() RETURNS uuid LANGUAGE plpgsql AS
$$ BEGIN RETURN uuid_generate_v4(); END $$
"""


def uuid_finding(database_url: str) -> Finding:
    (finding,) = run_checks(CheckContext(database_url=database_url), "database.uuid_extension")
    return finding


def test_a_schema_on_gen_random_uuid_needs_no_uuid_ossp(database_url: str) -> None:
    """The reference schema's ids come from gen_random_uuid(): absent and not needed."""
    finding = uuid_finding(database_url)
    assert finding.status is Status.PASSED, finding.message
    assert "not installed and not needed" in finding.message


def test_a_function_calling_uuid_generate_v4_without_the_extension_fails(
    database_url: str,
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(NEEDS_UUID_OSSP)
        with pytest.raises(psycopg.errors.UndefinedFunction):
            conn.execute("SELECT new_job_id()")  # what the app would meet
    finding = uuid_finding(database_url)
    assert finding.status is Status.FAILED
    assert "function new_job_id()" in finding.message


def test_an_empty_database_cannot_tell(postgres_server: EmbeddedPostgres) -> None:
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS uuid_empty")
        conn.execute("CREATE DATABASE uuid_empty")
    try:
        finding = uuid_finding(postgres_server.url_for("uuid_empty"))
    finally:
        with psycopg.connect(postgres_server.url, autocommit=True) as conn:
            conn.execute("DROP DATABASE uuid_empty WITH (FORCE)")
    assert finding.status is Status.NOT_APPLICABLE
    assert "LIVE-DB-MIGRATIONS" in finding.message


def test_without_a_database_url_the_uuid_check_is_not_applicable() -> None:
    (finding,) = run_checks(CheckContext(), "database.uuid_extension")
    assert finding.status is Status.NOT_APPLICABLE


@pytest.fixture(scope="module")
def contrib_postgres() -> Iterator[str]:
    """A PostgreSQL that offers uuid-ossp (the embedded one has no contrib modules): the stack's
    Debian image, on a loopback port, removed afterwards. Its superuser's URL, without database."""
    import os
    import time

    image = os.environ.get("TASKFORGE_POSTGRES_IMAGE", "taskforge-local/postgres:15-bookworm")
    client = docker_client(image)
    container = client.containers.run(
        image, detach=True, environment={"POSTGRES_PASSWORD": "uuid-test"},
        ports={"5432/tcp": ("127.0.0.1", None)}, labels={"org.taskforge.test": "uuid-ossp"},
    )
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["5432/tcp"][0]["HostPort"]
        url = f"postgresql://postgres:uuid-test@127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:  # initdb, then the restart the entrypoint does: bounded by the deadline
            try:
                with psycopg.connect(f"{url}/postgres", connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield url
    finally:
        container.remove(force=True)
        client.close()


@pytest.mark.docker
@pytest.mark.parametrize(
    ("name", "schema", "status", "words"),
    [
        ("uuid_present", 'CREATE EXTENSION "uuid-ossp";'
         "CREATE TABLE jobs (id uuid PRIMARY KEY DEFAULT uuid_generate_v4())",
         Status.PASSED, "the schema calls it from column default jobs.id"),
        ("uuid_needed", NEEDS_UUID_OSSP, Status.FAILED,
         "uuid-ossp is not installed, but the schema calls"),
        ("uuid_not_needed", "CREATE TABLE jobs (id uuid PRIMARY KEY DEFAULT gen_random_uuid())",
         Status.PASSED, "not installed and not needed"),
    ],
    ids=["present", "absent-but-needed", "absent-and-not-needed"],
)
def test_uuid_ossp_judged_on_a_server_that_offers_it(
    contrib_postgres: str, name: str, schema: str, status: Status, words: str
) -> None:
    with psycopg.connect(f"{contrib_postgres}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(f"{contrib_postgres}/{name}", autocommit=True) as conn:
        conn.execute(schema)
    finding = uuid_finding(f"{contrib_postgres}/{name}")
    assert (finding.status, words in finding.message) == (status, True), finding.message
    if status is Status.FAILED:  # offered by this server: the remediation is one statement
        assert "does not offer" not in finding.message
