"""`python -m reference_server serve` as a real process: TLS, workers, SIGTERM, refusals, logs."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families

from reference_server.devservices import free_port

START_LIMIT_SECONDS = 90.0
STOP_LIMIT_SECONDS = 60.0
STRONG_ACCESS = "A" * 20 + "k9vQx2LmN7pR4sT8wY1zB3cD5fG6hJ0"
STRONG_REFRESH = "B" * 20 + "m3nP5qR7sT9uV1wX2yZ4aC6eG8iK0lO"
PASSWORD = "serve-test-password-1"
#: Variables of the server that the test process might carry; each test sets its own.
SERVER_VARIABLES = (
    "DATABASE_URL", "DB_HOST", "DB_NAME", "DB_USER", "DB_PASSWORD", "DB_PORT", "REDIS_URL",
    "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "APP_ENVIRONMENT", "JWT_SECRET",
    "JWT_REFRESH_SECRET", "CORS_ALLOWED_ORIGINS", "BASE_URL", "WORKERS", "LOG_FILE_PATH",
    "TLS_CERT_FILE", "TLS_KEY_FILE", "PROMETHEUS_MULTIPROC_DIR", "APPLICATION_PORT",
)

pytestmark = pytest.mark.slow


def server_env(**values: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
    env.update({k: str(v) for k, v in values.items()})
    return env


def serve(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "reference_server", "serve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_healthy(proc: subprocess.Popen[bytes], url: str, **client: Any) -> httpx.Response:
    deadline = time.monotonic() + START_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read().decode() if proc.stdout else ""
            raise AssertionError(f"server exited with {proc.returncode}:\n{output[-3000:]}")
        try:
            response = httpx.get(url + "/health", timeout=2, **client)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        if response.status_code == 200:
            return response
        time.sleep(0.2)
    raise AssertionError("server did not become healthy in time")


def stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    """SIGTERM, then the exit status and everything the process printed."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        output, _ = proc.communicate(timeout=STOP_LIMIT_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise AssertionError("server did not stop after SIGTERM") from None
    return proc.returncode, output.decode()


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return ca_file, cert_file, key_file


async def _job_status(database_url: str, job_id: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        status: str = await conn.fetchval("SELECT status FROM jobs WHERE id = $1::uuid", job_id)
        return status
    finally:
        await conn.close()


async def test_serves_tls_with_workers_and_stops_gracefully_on_sigterm(
    database_url: str, redis_url: str, tls: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    ca_file, cert_file, key_file = tls
    port = free_port()
    log_file = tmp_path / "server.log"
    env = server_env(
        DATABASE_URL=database_url, REDIS_URL=redis_url, APPLICATION_PORT=port, WORKERS=2,
        TLS_CERT_FILE=cert_file, TLS_KEY_FILE=key_file, LOG_FILE_PATH=log_file,
        JWT_SECRET=STRONG_ACCESS, JWT_REFRESH_SECRET=STRONG_REFRESH, BUILTIN_WORKERS=1,
    )
    base = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cafile=str(ca_file))
    proc = serve(env)
    try:
        health = wait_healthy(proc, base, verify=trust)
        assert health.json()["status"] == "ok"
        with httpx.Client(base_url=base, verify=trust, timeout=10) as client:
            with pytest.raises(httpx.ConnectError):  # the certificate is checked, not waved through
                httpx.get(base + "/health", timeout=5)
            email = f"serve{port}@example.test"
            registered = client.post(
                "/api/v1/auth/register",
                json={"email": email, "password": PASSWORD, "organization_name": "Serve"},
            )
            assert registered.status_code == 201
            tokens = client.post(
                "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
            ).json()["data"]
            auth = {"Authorization": f"Bearer {tokens['access_token']}"}
            # Tokens signed in one worker verify in the other: the secrets are shared.
            for _ in range(6):
                assert client.get("/api/v1/auth/validate", headers=auth).status_code == 200
            job = client.post(
                "/api/v1/jobs",
                headers=auth,
                json={"queue_name": "default", "job_type": "sleep", "payload": {"seconds": 2}},
            ).json()["data"]
            deadline = time.monotonic() + 30
            status = job["status"]
            while status != "processing" and time.monotonic() < deadline:
                time.sleep(0.05)
                status = client.get(f"/api/v1/jobs/{job['id']}", headers=auth).json()["data"][
                    "status"]
            assert status == "processing"

            def oversized() -> Iterator[bytes]:  # chunked: no Content-Length to judge by
                yield b'{"queue_name": "default", "job_type": "t", "payload": {"x": "'
                for _ in range(40):
                    yield b"x" * 32768
                yield b'"}}'

            chunked = client.post(
                "/api/v1/jobs",
                headers={**auth, "Content-Type": "application/json"},
                content=oversized(),
            )
            assert chunked.status_code == 413
            assert chunked.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
            tls12 = ssl.create_default_context(cafile=str(ca_file))
            tls12.maximum_version = ssl.TLSVersion.TLSv1_2  # the guide's policy allows 1.2
            assert httpx.get(base + "/health", verify=tls12, timeout=5).status_code == 200
            for _ in range(20):  # fresh connections: the two workers share them out
                assert httpx.get(base + "/health", verify=trust, timeout=5).status_code == 200
            metrics = client.get("/metrics").text
            families = {f.name: f for f in text_string_to_metric_families(metrics)}
            assert {"taskforge_http_request_duration_seconds", "taskforge_redis_up"} <= set(
                families)
            # Both workers' requests are counted: the exposition aggregates the processes.
            health_count = sum(
                sample.value
                for sample in families["taskforge_http_request_duration_seconds"].samples
                if sample.name.endswith("_count") and sample.labels.get("route") == "/health"
            )
            assert health_count >= 21
    finally:
        code, output = stop(proc)
    assert code == 0, output[-3000:]
    # The in-flight job finished within the grace period instead of being cut off.
    assert await _job_status(database_url, job["id"]) == "succeeded"
    text = log_file.read_text()
    assert '"message":"request"' in text
    for secret in (PASSWORD, tokens["access_token"], tokens["refresh_token"], STRONG_ACCESS,
                   STRONG_REFRESH, database_url):
        assert secret not in text
        assert secret not in output


CONTRACT_METRICS = {
    "taskforge_job_submitted", "taskforge_job_processed",
    "taskforge_job_processing_duration_seconds", "taskforge_job_wait_duration_seconds",
    "taskforge_queue_length", "taskforge_worker_active_count",
    "taskforge_http_request_duration_seconds", "taskforge_db_pool_connections",
    "taskforge_redis_up",
}


def test_guide_smoke_sequence_on_embedded_services(tmp_path: Path) -> None:
    """Guide 5.2 against a bare `serve` (no URLs: embedded PostgreSQL and Redis, stopped after)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve(server_env(APPLICATION_PORT=port))
    try:
        health = wait_healthy(proc, base)
        checks = health.json()["checks"]
        assert (checks["database"], checks["redis"]) == ("ok", "ok")
        assert checks["migrations"]["current"] is True
        with httpx.Client(base_url=base, timeout=10) as client:
            names = {f.name for f in text_string_to_metric_families(client.get("/metrics").text)}
            missing = CONTRACT_METRICS - names
            assert not missing, missing
            email = f"smoke{port}@example.test"
            client.post("/api/v1/auth/register", json={
                "email": email, "password": PASSWORD, "organization_name": "Smoke"})
            token = client.post("/api/v1/auth/login", json={
                "email": email, "password": PASSWORD}).json()["data"]["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            created = client.post("/api/v1/jobs", headers=auth, json={
                "queue_name": "default", "job_type": "test_job", "payload": {"test": "data"},
                "priority": 5})
            assert created.status_code == 201
            job_id = created.json()["data"]["id"]
            deadline = time.monotonic() + 30
            status = created.json()["data"]["status"]
            while status not in ("succeeded", "failed", "dead") and time.monotonic() < deadline:
                time.sleep(0.1)
                status = client.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["data"][
                    "status"]
            assert status == "succeeded"
    finally:
        code, output = stop(proc)
    assert code == 0, output[-3000:]
    pg_line = next(line for line in output.splitlines() if line.startswith("embedded PostgreSQL"))
    pg_port = int(pg_line.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(ConnectionRefusedError):  # stopped with the server
        socket.create_connection(("127.0.0.1", pg_port), timeout=1).close()


PRODUCTION_BASE = {
    "APP_ENVIRONMENT": "production",
    "DATABASE_URL": "postgresql://u:p@127.0.0.1:1/db",
    "REDIS_URL": "redis://127.0.0.1:1/0",
    "BASE_URL": "https://api.example.test",
    "JWT_SECRET": STRONG_ACCESS,
    "JWT_REFRESH_SECRET": STRONG_REFRESH,
    "CORS_ALLOWED_ORIGINS": "https://app.example.test",
}


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"JWT_SECRET": "short-secret"}, "JWT_SECRET"),
        ({"JWT_SECRET": "your_jwt_secret_key_here_make_it_long_enough"}, "JWT_SECRET"),
        ({"JWT_SECRET": None}, "JWT_SECRET"),
        ({"JWT_REFRESH_SECRET": "changeme"}, "JWT_REFRESH_SECRET"),
        ({"JWT_REFRESH_SECRET": STRONG_ACCESS}, "JWT_REFRESH_SECRET"),
        ({"CORS_ALLOWED_ORIGINS": "*"}, "CORS_ALLOWED_ORIGINS"),
        ({"BASE_URL": "http://api.example.test"}, "BASE_URL"),
        ({"DATABASE_URL": None}, "DATABASE_URL"),
        ({"REDIS_URL": None}, "REDIS_URL"),
        ({"APPLICATION_PORT": "eighty"}, "APPLICATION_PORT"),
    ],
)
def test_production_refuses_weak_settings(change: dict[str, str | None], variable: str) -> None:
    values = {**PRODUCTION_BASE, **change}
    env = server_env(**{k: v for k, v in values.items() if v is not None})
    result = subprocess.run(
        [sys.executable, "-m", "reference_server", "serve"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    stderr = result.stderr.decode().strip()
    assert result.returncode == 2, stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith(f"error: {variable} ")
    for secret in (STRONG_ACCESS, STRONG_REFRESH):
        assert secret not in stderr


def test_missing_tls_file_is_a_configuration_error(tmp_path: Path) -> None:
    env = server_env(
        DATABASE_URL="postgresql://u@127.0.0.1:1/db",
        REDIS_URL="redis://127.0.0.1:1/0",
        TLS_CERT_FILE=tmp_path / "absent.pem",
        TLS_KEY_FILE=tmp_path / "absent.key",
    )
    result = subprocess.run(
        [sys.executable, "-m", "reference_server", "serve", "--no-migrate"],
        env=env, capture_output=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.decode().strip() == "error: TLS_CERT_FILE is not a readable file"


def test_unreachable_database_is_one_line_and_exit_3() -> None:
    env = server_env(DATABASE_URL=f"postgresql://u:s3cr3t-pw@127.0.0.1:{free_port()}/db",
                     REDIS_URL="redis://127.0.0.1:1/0")
    result = subprocess.run(
        [sys.executable, "-m", "reference_server", "serve"], env=env, capture_output=True,
        timeout=60,
    )
    stderr = result.stderr.decode().strip()
    assert result.returncode == 3
    assert len(stderr.splitlines()) == 1 and stderr.startswith("error: DATABASE_URL")
    assert "s3cr3t-pw" not in stderr


def test_migrate_command_applies_once(postgres_server: Any) -> None:
    import psycopg

    name = f"migrate_cli_{os.getpid()}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres_server.url_for(name)
    try:
        command = [sys.executable, "-m", "reference_server", "migrate", "--database-url", url]
        first = subprocess.run(command, env=server_env(), capture_output=True, timeout=60)
        second = subprocess.run(command, env=server_env(), capture_output=True, timeout=60)
    finally:
        with psycopg.connect(postgres_server.url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    assert first.returncode == 0, first.stderr
    assert first.stdout.decode().startswith("applied ")
    assert not first.stdout.decode().startswith("applied 0")
    assert second.returncode == 0
    assert second.stdout.decode().strip() == "applied 0 migration(s)"


def test_sigterm_while_starting_still_stops_embedded_services() -> None:
    proc = serve(server_env(APPLICATION_PORT=free_port(), BUILTIN_WORKERS=0))
    pg_port = None
    assert proc.stdout is not None
    for _ in range(50):  # bounded: the line comes within the first few
        line = proc.stdout.readline().decode()
        if line.startswith("embedded PostgreSQL"):
            pg_port = int(line.rsplit(":", 1)[1].split("/")[0])
            break
        if not line:
            break
    assert pg_port is not None
    code, output = stop(proc)  # SIGTERM before the server listens
    assert code == 0, output[-3000:]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", pg_port), timeout=1).close()


def _log_events(log_file: Path) -> list[dict[str, Any]]:
    import json

    if not log_file.exists():
        return []
    return [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]


def test_sigterm_ends_long_polls_at_once(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """Leasing stops at SIGTERM, before the server has drained its in-flight requests."""
    import threading

    port = free_port()
    log_file = tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    proc = serve(server_env(
        DATABASE_URL=database_url, REDIS_URL=redis_url, APPLICATION_PORT=port,
        JWT_SECRET=STRONG_ACCESS, JWT_REFRESH_SECRET=STRONG_REFRESH, BUILTIN_WORKERS=0,
        LOG_FILE_PATH=log_file, LOG_LEVEL="debug",
    ), "--no-migrate")
    answer: dict[str, Any] = {}
    try:
        wait_healthy(proc, base)
        with httpx.Client(base_url=base, timeout=60) as client:
            email = f"poll{port}@example.test"
            client.post("/api/v1/auth/register", json={
                "email": email, "password": PASSWORD, "organization_name": "Poll"})
            token = client.post("/api/v1/auth/login", json={
                "email": email, "password": PASSWORD}).json()["data"]["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            worker = client.post("/api/v1/workers", headers=auth, json={
                "name": "w", "queues": ["default"], "max_concurrent_jobs": 1}).json()["data"]
            path = f"/api/v1/workers/{worker['id']}/lease"

            def long_poll() -> None:
                response = client.post(path, headers=auth, json={"max_jobs": 1, "wait_seconds": 30})
                answer["status"], answer["body"] = response.status_code, response.json()

            poller = threading.Thread(target=long_poll)
            poller.start()
            deadline = time.monotonic() + 30
            while not any(e.get("path") == path and e["message"] == "request started"
                          for e in _log_events(log_file)):
                assert time.monotonic() < deadline, "the long-poll never reached the server"
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            poller.join(timeout=60)
    finally:
        code, output = stop(proc)
    assert code == 0, output[-3000:]
    assert answer["status"] == 200 and answer["body"]["data"]["jobs"] == []
    messages = [(e["message"], e.get("path")) for e in _log_events(log_file)]
    shutdown_at = messages.index(("shutting down: leasing stopped", None))
    lease_done_at = messages.index(("request", path))
    assert shutdown_at < lease_done_at  # the poll was ended by the shutdown, not by its timeout


def test_missing_env_file_is_a_configuration_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reference_server", "serve", "--env-file", str(tmp_path / "nope")],
        env=server_env(), capture_output=True, timeout=60,
    )
    assert result.returncode == 2
    expected = f"error: --env-file {tmp_path / 'nope'} is not a readable file"
    assert result.stderr.decode().strip() == expected


#: A worker forked from Granian's main process, before its target module is imported: the
#: inherited handler only flags the main process' state (`interrupt_signal`) in the worker's copy.
_FORKED_WORKER = """
import os, signal, sys, time

class MainState:
    interrupt_signal = False
    def signal_handler_interrupt(self, *args):
        self.interrupt_signal = True

state = MainState()
signal.signal(signal.SIGTERM, state.signal_handler_interrupt)
os.kill(os.getpid(), signal.SIGTERM)  # the deploy's stop, while the worker forks
time.sleep(0.1)  # the handler runs
import reference_server.granian_target  # noqa: F401 - what Granian's worker loads next
sys.exit(7)  # booted on: the stop was lost, Granian kills it after grace + margin
"""


def test_a_stop_that_reached_a_worker_before_its_target_loaded_ends_it() -> None:
    """A SIGTERM a worker got between fork and loading its target is not lost (it had waited
    for the kill timeout: 25 s of a 15 s grace in a loaded CI run)."""
    done = subprocess.run([sys.executable, "-c", _FORKED_WORKER], capture_output=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
