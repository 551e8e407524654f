"""Helpers of the live-check tests: reference servers (`python -m reference_server serve`, TLS).

Each server gets its own database (cloned from the migrated template), its own Redis database
number, a certificate from a throwaway CA (trustme), and a JSON log file. A server is started with
one setting changed at a time to show that the matching live check, and only it, fails.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from conformance.checks.all import registered_checks
from conformance.checks.registry import REGISTRY, CheckContext
from conformance.model import Finding, Status
from conformance.stack import Target
from reference_server.devservices import EmbeddedPostgres, EmbeddedRedis, free_port

TEMPLATE_DB = "taskforge_template"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
ALLOWED_ORIGIN = "https://app.example.test"
ADMIN_PASSWORD = "correct horse battery staple"
_servers = itertools.count()

#: The good configuration; the misconfiguration tests change one of these at a time.
BASE_SETTINGS = {
    "APP_ENVIRONMENT": "staging",
    "APPLICATION_HOST": "127.0.0.1",
    "CORS_ALLOWED_ORIGINS": ALLOWED_ORIGIN,
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "info",
    "METRICS_ENABLED": "true",
    "METRICS_ENDPOINT": "/metrics",
    "SECURITY_HSTS": "true",
    "RATE_LIMIT_ENABLED": "true",
    # Low enough that the bounded probe meets a real 429 (the probe runs last).
    "RATE_LIMIT_PER_MINUTE": "120",
    "WORKERS": "1",
    "BUILTIN_WORKERS": "1",
    "POOL_SIZE": "4",
    "HEALTH_CHECK_TIMEOUT_SECONDS": "3",
    "SHUTDOWN_GRACE_SECONDS": "2",
}


@dataclass
class LiveServer:
    target: Target
    process: subprocess.Popen[bytes]
    output: Path
    log_file: Path
    database_name: str

    def context(self, **overrides: Any) -> CheckContext:
        values: dict[str, Any] = {"target": self.target, "run_id": "live-tests"}
        values.update(overrides)
        return CheckContext(**values)


def _wait_healthy(url: str, ca: Path, process: subprocess.Popen[bytes], output: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca)), timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"server exited {process.returncode}: {output.read_text()[-2000:]}"
                )
            try:
                if client.get(url + "/ready").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    tail = output.read_text()[-2000:]
    raise RuntimeError(f"server not ready in {START_TIMEOUT_SECONDS}s: {tail}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_SECONDS) -> None:
    """SIGTERM, `timeout` seconds to exit, then SIGKILL; nothing if it has exited already."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def serve(
    directory: Path,
    postgres: EmbeddedPostgres,
    redis_server: EmbeddedRedis,
    tls: tuple[Path, Path, Path],
    **overrides: str,
) -> Iterator[LiveServer]:
    """A reference server process with BASE_SETTINGS and the overrides; stopped on exit."""
    number = next(_servers)
    database = f"live_{os.getpid()}_{number}"
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database} TEMPLATE {TEMPLATE_DB}")
    port = free_port()
    base_url = f"https://127.0.0.1:{port}"
    log_file = directory / f"app-{number}.log"
    output = directory / f"server-{number}.out"
    ca, chain, key = tls
    settings = {
        **BASE_SETTINGS,
        "DATABASE_URL": postgres.url_for(database),
        # A Redis database of its own: rate-limit counters must not carry over between servers.
        "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/{number % 16}",
        "APPLICATION_PORT": str(port),
        "BASE_URL": base_url,
        "TLS_CERT_FILE": str(chain),
        "TLS_KEY_FILE": str(key),
        "LOG_FILE_PATH": str(log_file),
        "JWT_SECRET": secrets.token_urlsafe(48),
        "JWT_REFRESH_SECRET": secrets.token_urlsafe(48),
        **overrides,
    }
    env = {k: v for k, v in os.environ.items() if k not in BASE_SETTINGS}
    env.update(settings)
    with output.open("wb") as sink:
        process = subprocess.Popen(
            # Migrating the template's clone is a no-op unless a migration file arrived since.
            [sys.executable, "-m", "reference_server", "serve"],
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        _wait_healthy(base_url, ca, process, output)
        email = f"admin-{number}@example.test"
        verify = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(verify=verify, base_url=base_url, timeout=10) as client:
            registered = client.post(
                "/api/v1/auth/register",
                json={"email": email, "password": ADMIN_PASSWORD,
                      "organization_name": f"live tests {number}"},
            )
            assert registered.status_code == 201, registered.text
        target = Target(
            base_url=base_url, provider="embedded", is_reference=True, ca_bundle=ca,
            database_url=settings["DATABASE_URL"], redis_url=settings["REDIS_URL"],
            log_file=log_file, env=settings, admin_email=email, admin_password=ADMIN_PASSWORD,
        )
        yield LiveServer(
            target=target, process=process, output=output, log_file=log_file,
            database_name=database,
        )
    finally:
        stop_process(process)
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def docker_client(image: str) -> Any:
    """A Docker client whose engine answers and holds `image`. Without them the test skips,
    saying why, or fails where TASKFORGE_REQUIRE_DOCKER=1 (CI must have the engine and image)."""
    import docker  # only the docker tests need the package

    try:
        client = docker.from_env(timeout=10)
        client.ping()
        client.images.get(image)
    except Exception as exc:  # any reason the engine cannot serve this test
        if os.environ.get("TASKFORGE_REQUIRE_DOCKER") == "1":
            pytest.fail(f"TASKFORGE_REQUIRE_DOCKER=1 but docker/{image}: {exc}", pytrace=False)
        pytest.skip(f"docker: {exc}")
    return client


def run_checks(ctx: CheckContext, *names: str) -> list[Finding]:
    """Run the named live checks (function names, e.g. "health.health") in order."""
    list(registered_checks())  # imports every check module
    findings: list[Finding] = []
    for name in names:
        findings += REGISTRY[f"conformance.checks.live.{name}"].run(ctx)
    return findings


def statuses(findings: list[Finding]) -> dict[str, Status]:
    """Item id -> the worst status any finding gave it."""
    from conformance.model import fold_status

    by_item: dict[str, list[Finding]] = {}
    for finding in findings:
        by_item.setdefault(finding.item_id, []).append(finding)
    return {item: fold_status(group) for item, group in by_item.items()}


def explain(findings: list[Finding]) -> str:
    return "\n".join(f"{f.item_id}: {f.status.value}: {f.message}" for f in findings)


ServerFactory = Callable[..., contextlib.AbstractContextManager[LiveServer]]
