"""`python -m reference_server serve|migrate`: the reference server's command line.

This module imports neither the app nor the metrics at the top: with WORKERS > 1,
PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client creates the metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reference_server.config import Settings, load_settings
from reference_server.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Sequence

#: Tells worker processes which env file the parent read (the environment still wins).
ENV_FILE_VARIABLE = "TASKFORGE_ENV_FILE"
class ExitStatus(IntEnum):
    """Exit statuses of `python -m reference_server` (serve, migrate, check-config)."""

    OK = 0
    CONFIG = 2  # a missing or invalid setting, an unreadable file
    UNAVAILABLE = 3  # a dependency (database, embedded service) could not be reached or started
#: Granian kills a worker that has not stopped this long after the grace period.
KILL_MARGIN_SECONDS = 10


def _fail(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reference_server", description="The TaskForge reference job service."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the API (WORKERS processes)")
    serve.add_argument("--env-file", type=Path, help="read settings from this file too")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations first")
    migrate = sub.add_parser("migrate", help="apply pending migrations (sqlx-compatible)")
    migrate.add_argument("--database-url", help="defaults to DATABASE_URL / DB_* settings")
    migrate.add_argument("--env-file", type=Path, help="read settings from this file too")
    return parser


def _migrate(dsn: str) -> list[int]:
    from reference_server.migrate import apply_migrations

    return [m.version for m in asyncio.run(apply_migrations(dsn))]


def _short(exc: BaseException) -> str:
    """One line about an error, without URLs (they may carry passwords)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200] if "://" not in text else type(exc).__name__


def command_migrate(args: argparse.Namespace) -> int:
    dsn = args.database_url
    if dsn is None:
        settings = load_settings(args.env_file)
        dsn = settings.database_url
    if dsn is None:
        return _fail("DATABASE_URL is required (or --database-url)", ExitStatus.CONFIG)
    try:
        applied = _migrate(dsn)
    except Exception as exc:
        return _fail(f"DATABASE_URL migration failed ({_short(exc)})", ExitStatus.UNAVAILABLE)
    print(f"applied {len(applied)} migration(s)" + (f": {applied}" if applied else ""))
    return ExitStatus.OK


def _terminated(signum: int, frame: object) -> None:
    # Until Granian installs its own handler: unwind, so embedded services are stopped too.
    raise SystemExit(ExitStatus.OK)


def command_serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.env_file)
    signal.signal(signal.SIGTERM, _terminated)
    if args.env_file is not None:
        os.environ[ENV_FILE_VARIABLE] = str(args.env_file.resolve())
    with contextlib.ExitStack() as stack:
        if settings.database_url is None or settings.redis_url is None:
            if settings.is_production:
                missing = "DATABASE_URL" if settings.database_url is None else "REDIS_URL"
                return _fail(f"{missing} is required in production", ExitStatus.CONFIG)
            status = _start_embedded(settings, stack)
            if status:
                return status
        if not settings.JWT_SECRET or not settings.JWT_REFRESH_SECRET:
            # Generated once here and handed to every worker, so tokens verify in all of them.
            generated = settings.with_generated_secrets()
            os.environ["JWT_SECRET"] = str(generated.JWT_SECRET)
            os.environ["JWT_REFRESH_SECRET"] = str(generated.JWT_REFRESH_SECRET)
            print("JWT secrets were not set: generated random ones for this run", flush=True)
        settings = load_settings(args.env_file)
        dsn = settings.database_url
        assert dsn is not None
        if not args.no_migrate:
            try:
                applied = _migrate(dsn)
            except Exception as exc:
                return _fail(f"DATABASE_URL migration failed ({_short(exc)})",
                             ExitStatus.UNAVAILABLE)
            print(f"migrations applied: {len(applied)}", flush=True)
        if settings.WORKERS > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            metrics_dir = tempfile.mkdtemp(prefix="taskforge-metrics-")
            stack.callback(shutil.rmtree, metrics_dir, ignore_errors=True)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        # Only now: prometheus_client decides on multiprocess mode when it is first imported,
        # and the forked workers inherit that decision.
        from reference_server.observability import configure_logging

        configure_logging(settings)
        return _run_granian(settings)
    return ExitStatus.OK  # pragma: no cover - the with block always returns


def _start_embedded(settings: Settings, stack: contextlib.ExitStack) -> int:
    from reference_server.devservices import DevServiceError, EmbeddedPostgres, EmbeddedRedis

    try:
        if settings.database_url is None:
            pg = EmbeddedPostgres()
            stack.callback(pg.stop)
            pg.start()
            os.environ["DATABASE_URL"] = pg.url
            print(f"embedded PostgreSQL: {pg.url}", flush=True)
        if settings.redis_url is None:
            rd = EmbeddedRedis()
            stack.callback(rd.stop)
            rd.start()
            os.environ["REDIS_URL"] = rd.url
            print(f"embedded Redis: {rd.url}", flush=True)
    except (DevServiceError, OSError) as exc:
        return _fail(f"embedded services did not start ({_short(exc)})", ExitStatus.UNAVAILABLE)
    return ExitStatus.OK


def _run_granian(settings: Settings) -> int:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, SSLProtocols
    from granian.http import HTTP1Settings

    from reference_server.slots import connection_ceiling

    tls: dict[str, Any] = {}
    if settings.TLS_CERT_FILE is not None and settings.TLS_KEY_FILE is not None:
        for name, path in (("TLS_CERT_FILE", settings.TLS_CERT_FILE),
                           ("TLS_KEY_FILE", settings.TLS_KEY_FILE)):
            if not path.is_file():
                return _fail(f"{name} is not a readable file", ExitStatus.CONFIG)
        tls = {"ssl_cert": settings.TLS_CERT_FILE, "ssl_key": settings.TLS_KEY_FILE,
               # The guide's policy (TLSv1.2 and TLSv1.3); Granian alone would demand 1.3.
               "ssl_protocol_min": SSLProtocols.tls12}
    server = Granian(
        "reference_server.granian_target:app_from_environment",
        factory=True,
        address=settings.APPLICATION_HOST,
        port=settings.APPLICATION_PORT,
        interface=Interfaces.ASGI,
        workers=settings.WORKERS,
        # HTTP/1 only: in auto mode Granian first waits, with no time limit, for the bytes that
        # tell HTTP/1 from HTTP/2, so a silent socket held its connection for good (measured:
        # still open after 40 s; in HTTP/1 mode it is dropped at the header timeout).
        http=HTTPModes.http1,
        http1_settings=HTTP1Settings(
            header_read_timeout=int(settings.HEADER_READ_TIMEOUT_SECONDS * 1000)
        ),
        backpressure=connection_ceiling(settings),
        workers_kill_timeout=int(settings.SHUTDOWN_GRACE_SECONDS) + KILL_MARGIN_SECONDS,
        # Granian's own lines go through the same JSON pipeline (and redaction) as ours.
        log_dictconfig={
            "handlers": {"structlog": {"class": "reference_server.observability.StructlogHandler"}},
            "loggers": {"_granian": {"handlers": ["structlog"], "propagate": False}},
        },
        **tls,
    )
    try:
        server.serve()
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 1
    return ExitStatus.OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.env_file is not None and not args.env_file.is_file():
        # pydantic-settings would skip a missing file silently; a typo must not go unnoticed.
        return _fail(f"--env-file {args.env_file} is not a readable file", ExitStatus.CONFIG)
    try:
        if args.command == "serve":
            return command_serve(args)
        return command_migrate(args)
    except ConfigurationError as exc:
        return _fail(str(exc), ExitStatus.CONFIG)
    except KeyboardInterrupt:
        return ExitStatus.OK
