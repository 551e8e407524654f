"""The embedded provider: pip-shipped PostgreSQL and Redis, the reference server as a subprocess.

Works on a machine with nothing but Python. Everything lives in one temporary directory (the TLS
files, the server's log, its stdout and stderr) that is removed on exit.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from conformance.stack import launcher
from conformance.stack.base import StackConfigError, StackError, Target, say, signals_deferred
from conformance.stack.images import cache_dir
from conformance.stack.reference import (
    READY_TIMEOUT_SECONDS,
    ServerEnv,
    generated_secrets,
    register_admin,
    wait_ready,
    with_overrides,
)
from conformance.stack.tls import issue

if TYPE_CHECKING:
    from reference_server.devservices import EmbeddedPostgres

DATABASE = "taskforge"


def _create_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # our own constant name, not user input


def _chown_tree(path: Path, user: str) -> None:
    shutil.chown(path, user)
    for parent, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            shutil.chown(Path(parent) / name, user)


def cluster_template() -> Path:
    """A stopped cluster with the database created, made once per machine and copied per stack.

    initdb is most of an embedded PostgreSQL's start-up; copying its result is a fraction of it.
    Built in a temporary directory and renamed into place, so concurrent first runs do not clash.
    """
    from importlib.metadata import version

    from reference_server.devservices import EmbeddedPostgres

    template = cache_dir().parent / f"pgdata-pgserver{version('pgserver')}-{DATABASE}"
    if (template / "PG_VERSION").is_file():
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    # Made in the temporary directory: as root, PostgreSQL's own user must reach it, and the cache
    # may live under a home directory closed to others.
    work = Path(tempfile.mkdtemp(prefix="taskforge-pgdata-"))
    work.chmod(0o755)
    staged = Path(tempfile.mkdtemp(prefix=".staging-", dir=template.parent))
    try:
        pg = EmbeddedPostgres(root=work / "pg")
        (work / "pg").mkdir()
        try:
            pg.start()
            _create_database(pg.url, DATABASE)
        finally:
            pg.stop(remove=False)
        shutil.copytree(pg.data_dir, staged / "data", symlinks=True)
        with contextlib.suppress(OSError):  # another process won the race: use theirs
            os.rename(staged / "data", template)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(staged, ignore_errors=True)
    if not (template / "PG_VERSION").is_file():
        raise StackError(f"no PostgreSQL cluster template at {template}")
    return template


def start_postgres(pg: EmbeddedPostgres) -> None:
    """Start `pg` on a copy of the cluster template (initdb only when there is no template)."""
    from reference_server.devservices import POSTGRES_OS_USER

    try:
        template = cluster_template()
    except Exception as exc:
        say(f"embedded: no cluster template ({type(exc).__name__}: {exc}); running initdb")
        pg.start()
        _create_database(pg.url, DATABASE)
        return
    shutil.copytree(template, pg.data_dir, symlinks=True)
    pg.data_dir.chmod(0o700)
    if os.geteuid() == 0:  # devservices runs PostgreSQL as its own user when we are root
        pg.root.chmod(0o755)
        _chown_tree(pg.root, POSTGRES_OS_USER)
    pg.resume()


@contextlib.contextmanager
def embedded_stack(
    *,
    server_env: ServerEnv | None = None,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
    create_admin: bool = True,
    **unknown: object,
) -> Iterator[Target]:
    """PostgreSQL, Redis and the server over TLS on loopback ports; all removed on exit."""
    if unknown:
        raise StackConfigError(f"the embedded stack takes no option {', '.join(sorted(unknown))}")
    from reference_server.devservices import (
        DevServiceError,
        EmbeddedPostgres,
        EmbeddedRedis,
        free_port,
    )

    root = Path(tempfile.mkdtemp(prefix="taskforge-embedded-"))
    # As root, PostgreSQL runs as its own user (devservices), which must traverse this directory.
    root.chmod(0o755)
    pg = EmbeddedPostgres(root=root / "postgres")
    redis = EmbeddedRedis(root=root / "redis", password=secrets.token_urlsafe(24))
    server: launcher.ServerProcess | None = None
    try:
        started = time.monotonic()
        (root / "postgres").mkdir()
        (root / "redis").mkdir()
        try:
            # Redis starts while initdb runs: the two cost a second or more only when serial.
            with ThreadPoolExecutor(max_workers=1) as pool:
                redis_started = pool.submit(redis.start)
                start_postgres(pg)
                redis_started.result()
        except (DevServiceError, OSError) as exc:
            raise StackError(f"embedded services did not start: {exc}") from None
        tls = issue(root / "tls")
        port = free_port()
        base_url = f"https://127.0.0.1:{port}"
        settings = with_overrides({
            "DATABASE_URL": pg.url_for(DATABASE),
            "REDIS_URL": redis.url,
            "APP_ENVIRONMENT": "production",
            "APPLICATION_HOST": "127.0.0.1",
            "APPLICATION_PORT": str(port),
            "BASE_URL": base_url,
            "TLS_CERT_FILE": str(tls.cert_file),
            "TLS_KEY_FILE": str(tls.key_file),
            "LOG_FORMAT": "json",
            "LOG_FILE_PATH": str(root / "server.log"),
            "CORS_ALLOWED_ORIGINS": base_url,
            "WORKERS": "1",
            **generated_secrets(),
        }, server_env)
        server = launcher.start(settings, cwd=root, stdout=root / "server.out",
                                stderr=root / "server.err")
        running = server

        def still_running() -> str | None:
            exited = running.exited()
            return None if exited is None else f"the reference server {exited}"

        wait_ready(base_url, tls.ca_bundle, still_running=still_running, timeout=ready_timeout)
        email = password = None
        if create_admin:
            email, password = register_admin(base_url, tls.ca_bundle)
        say(f"embedded: PostgreSQL, Redis and the server ready at {base_url} "
            f"in {time.monotonic() - started:.1f}s")
        yield Target(
            base_url=base_url,
            provider="embedded",
            is_reference=True,
            ca_bundle=tls.ca_bundle,
            database_url=pg.url_for(DATABASE),
            redis_url=redis.url,
            log_file=root / "server.log",
            env=settings,
            admin_email=email,
            admin_password=password,
        )
    finally:
        with signals_deferred():
            if server is not None:
                server.stop()
            redis.stop()
            pg.stop()
            shutil.rmtree(root, ignore_errors=True)
