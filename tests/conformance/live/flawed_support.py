"""Serving `flawed_app` for the tests: a Granian process on 127.0.0.1 with TLS, flaws on switches.

Each server is one process with its own in-memory state; the tests register two organisations
on it, as a user pointing the kit at someone's deployment would have two accounts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from live_support import stop_process

from conformance.checks.registry import CheckContext
from conformance.stack import Target
from reference_server.devservices import free_port

HERE = Path(__file__).parent
START_TIMEOUT_SECONDS = 30.0
PASSWORD = "flawed but long enough"


@dataclass
class FlawedServer:
    target: Target
    process: subprocess.Popen[bytes]
    jwt_secret: str
    second_email: str

    def context(self, **overrides: Any) -> CheckContext:
        """A run against this server as against a foreign deployment: login, a second identity,
        writes allowed (the kit's own throwaway objects), the server's JWT secret known."""
        values: dict[str, Any] = {
            "run_id": "flawed-tests", "email": self.target.admin_email,
            "password": self.target.admin_password, "second_email": self.second_email,
            "second_password": PASSWORD, "jwt_secret": self.jwt_secret,
        }
        values.update(overrides)
        return CheckContext(target=self.target, allow_writes=True, **values)


def _register(client: httpx.Client, email: str, organisation: str) -> None:
    response = client.post("/api/v1/auth/register", json={
        "email": email, "password": PASSWORD, "organization_name": organisation,
    })
    assert response.status_code == 201, response.text


@contextlib.contextmanager
def serve_flawed(
    tls: tuple[Path, Path, Path], flaws: Iterable[str] = (), *, backpressure: int = 64,
    directory: Path, variants: Iterable[str] = (), env_extra: dict[str, str] | None = None,
) -> Iterator[FlawedServer]:
    ca, chain, key = tls
    port = free_port()
    secret = secrets.token_urlsafe(32)
    env = {**os.environ, "FLAWS": ",".join(flaws), "VARIANTS": ",".join(variants),
           "JWT_SECRET": secret, **(env_extra or {}),
           "JWT_REFRESH_SECRET": secrets.token_urlsafe(32)}
    output = directory / f"flawed-{port}.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", "--backpressure", str(backpressure),
             "--ssl-certificate", str(chain), "--ssl-keyfile", str(key), "--no-access-log",
             "--working-dir", str(HERE), "flawed_app:app"],
            env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    base_url = f"https://127.0.0.1:{port}"
    try:
        verify = ssl.create_default_context(cafile=str(ca))
        with httpx.Client(base_url=base_url, verify=verify, timeout=5) as client:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"flawed server exited: {output.read_text()[-2000:]}")
                try:
                    if client.get("/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"flawed server not ready: {output.read_text()[-2000:]}")
                time.sleep(0.1)
            _register(client, "a@flawed.example.test", "organisation A")
            _register(client, "b@flawed.example.test", "organisation B")
        target = Target(
            base_url=base_url, provider="external", is_reference=False, ca_bundle=ca,
            admin_email="a@flawed.example.test", admin_password=PASSWORD,
        )
        yield FlawedServer(target=target, process=process, jwt_secret=secret,
                           second_email="b@flawed.example.test")
    finally:
        stop_process(process, timeout=10)
