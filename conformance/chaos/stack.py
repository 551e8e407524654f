"""A reference stack whose parts the chaos scenarios may kill, stop and restart.

PostgreSQL and Redis come from reference_server.devservices (pause/resume keep their data); the
server is `python -m reference_server serve` in a process group of its own, over plain HTTP on a
loopback port, so SIGKILL of the group takes every Granian worker with it.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from conformance.stack import StackError, launcher
from conformance.stack.embedded import DATABASE, start_postgres
from conformance.stack.launcher import ServerProcess
from reference_server.devservices import EmbeddedPostgres, EmbeddedRedis, free_port

READY_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0
ADMIN_EMAIL = "chaos@conformance.example.com"


class ChaosError(RuntimeError):
    """The stack could not be brought into the state a scenario needs (not a broken promise)."""


@dataclass
class ChaosStack:
    """PostgreSQL, Redis and the server; every part can be stopped and started again."""

    workers: int = 2
    server_env: Mapping[str, str] = field(default_factory=dict)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="taskforge-chaos-")))
    pg: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None
    server: ServerProcess | None = None
    port: int = field(default_factory=free_port)
    token: str | None = None
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    _secrets: dict[str, str] = field(default_factory=dict)
    _starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        assert self.pg is not None
        return self.pg.url_for(DATABASE)

    # Services -----------------------------------------------------------------------------

    def start_services(self) -> None:
        self.root.chmod(0o755)  # PostgreSQL runs as its own user when we are root
        (self.root / "postgres").mkdir(exist_ok=True)
        (self.root / "redis").mkdir(exist_ok=True)
        self.pg = EmbeddedPostgres(root=self.root / "postgres", durable=True)
        self.redis = EmbeddedRedis(root=self.root / "redis")
        self.redis.start()
        # A copy of the embedded provider's cached cluster, which holds the database already.
        start_postgres(self.pg)
        self._secrets = {
            "JWT_SECRET": secrets.token_urlsafe(48),
            "JWT_REFRESH_SECRET": secrets.token_urlsafe(48),
        }

    def settings(self, overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
        assert self.redis is not None
        env = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis.url,
            "APP_ENVIRONMENT": "staging",
            "APPLICATION_HOST": "127.0.0.1",
            "APPLICATION_PORT": str(self.port),
            "BASE_URL": self.base_url,
            "LOG_FORMAT": "json",
            # info: Granian's "Started worker-N" lines tell when every process serves.
            "LOG_LEVEL": "info",
            "LOG_FILE_PATH": str(self.root / "server.log"),
            "WORKERS": str(self.workers),
            # The load is ours and deliberate: the limiter must not be what refuses it.
            "RATE_LIMIT_PER_MINUTE": "1000000",
            "SHUTDOWN_GRACE_SECONDS": "15",
            **self._secrets,
            **self.server_env,
        }
        for name, value in (overrides or {}).items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    # The server ---------------------------------------------------------------------------

    def start_server(self, overrides: Mapping[str, str | None] | None = None,
                     *, wait: bool = True) -> ServerProcess:
        if self.server is not None and self.server.group_alive():
            raise ChaosError("a server is already running")
        self._starts += 1
        self.server = launcher.start(self.settings(overrides), cwd=self.root,
                                     stdout=self.root / f"server-{self._starts}.out",
                                     stderr=self.root / f"server-{self._starts}.err")
        if wait:
            self.wait_ready()
            self.wait_workers_started()
        return self.server

    def workers_started(self) -> int:
        """How many of this start's server processes said they started (Granian's log line)."""
        if self.server is None:
            return 0
        try:
            text = self.server.stdout.read_bytes()
        except OSError:
            return 0
        return text.count(b'"Started worker-')

    def wait_workers_started(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """/ready answers once one process serves; a stop must not race the others' start-up."""
        deadline = time.monotonic() + timeout
        while self.workers_started() < self.workers:
            if time.monotonic() >= deadline:
                raise ChaosError(f"only {self.workers_started()} of {self.workers} server "
                                 f"processes started within {timeout:.0f}s")
            if self.server is not None and not self.server.alive():
                raise ChaosError(f"server exited with {self.server.proc.returncode}")
            time.sleep(0.05)

    def wait_ready(self, timeout: float = READY_TIMEOUT_SECONDS) -> float:
        """Poll /ready until 200; the seconds it took."""
        server = self.server

        def still_running() -> str | None:
            if server is None or server.alive():
                return None
            tail = server.stderr.read_text(errors="replace").strip()[-300:]
            return f"server exited with {server.proc.returncode}: {tail}"

        try:
            return launcher.wait_ready(f"{self.base_url}/ready", still_running=still_running,
                                       timeout=timeout)
        except StackError as exc:
            raise ChaosError(str(exc)) from None

    def kill_server(self) -> None:
        """SIGKILL the whole process group and reap it."""
        if self.server is None:
            return
        self.server.kill_group(signal.SIGKILL)
        self.server.wait(STOP_TIMEOUT_SECONDS)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while self.server.group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)

    def terminate_server(self, timeout: float) -> int | None:
        """SIGTERM the server's main process (as `docker stop` does); its exit status or None."""
        if self.server is None:
            return None
        self.server.proc.send_signal(signal.SIGTERM)
        return self.server.wait(timeout)

    def restart_server(self, overrides: Mapping[str, str | None] | None = None) -> str | None:
        """SIGTERM the server, then start it again; why the stop was not clean, or None.

        Every stop of the reference server is graceful: exit status 0 within the grace period.
        """
        problem = None
        if self.server is not None and self.server.alive():
            grace = float(self.settings()["SHUTDOWN_GRACE_SECONDS"])
            started = time.monotonic()
            status = self.terminate_server(grace + 20)
            took = time.monotonic() - started
            if status != 0 or took > grace + 5:
                shown = "no exit" if status is None else f"exit status {status}"
                problem = f"SIGTERM before a restart: {shown} after {took:.1f}s (grace {grace:g}s)"
        self.kill_server()
        self.start_server(overrides)
        return problem

    # Accounts ----------------------------------------------------------------------------

    def login(self) -> str:
        """Register the chaos account once (then log in); the bearer token."""
        password = self.password
        with httpx.Client(base_url=self.base_url, timeout=10.0) as client:
            if self.token is None:
                body = {"email": ADMIN_EMAIL, "password": password,
                        "organization_name": "TaskForge chaos"}
                response = client.post("/api/v1/auth/register", json=body)
                if response.status_code != 201:
                    raise ChaosError(f"register answered {response.status_code}")
            response = client.post("/api/v1/auth/login",
                                   json={"email": ADMIN_EMAIL, "password": password})
            if response.status_code != 200:
                raise ChaosError(f"login answered {response.status_code}")
            self.token = str(response.json()["data"]["access_token"])
        return self.token

    # Clean-up ----------------------------------------------------------------------------

    def keep_logs(self, directory: Path) -> None:
        """Copy the server's output and log file (every start) and the services' logs."""
        directory.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.root.glob("server*")):
            if path.is_file():
                shutil.copy2(path, directory / path.name)
        for path in (self.root / "postgres" / "postgres.log", self.root / "redis" / "redis.log"):
            if path.is_file():
                shutil.copy2(path, directory / path.name)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop(STOP_TIMEOUT_SECONDS)
        if self.redis is not None:
            self.redis.stop()
        if self.pg is not None:
            self.pg.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def chaos_stack(*, workers: int = 2, server_env: Mapping[str, str] | None = None,
                start_server: bool = True, logs_to: Path | None = None) -> Iterator[ChaosStack]:
    """Services started, the server started and an account logged in; all removed on exit.

    With `logs_to`, the server's and the services' logs are copied there first.
    """
    stack = ChaosStack(workers=workers, server_env=dict(server_env or {}))
    try:
        stack.start_services()
        if start_server:
            stack.start_server()
            stack.login()
        yield stack
    finally:
        if logs_to is not None:
            with contextlib.suppress(OSError):
                stack.keep_logs(logs_to)
        stack.close()
