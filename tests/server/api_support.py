"""Helpers of the HTTP-layer tests: an app on the per-test database and Redis, accounts, waits."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

from quart import Quart
from quart.typing import TestClientProtocol
from werkzeug.datastructures import Headers

from reference_server.app import create_app
from reference_server.config import Settings

ACCESS_SECRET = "test-access-secret-0123456789abcdefghijklmnop"
REFRESH_SECRET = "test-refresh-secret-0123456789abcdefghijklmnop"
PASSWORD = "correct horse battery staple"
#: Upper bound of every wait in these tests; reaching it fails the test, it never passes one.
WAIT_LIMIT_SECONDS = 20.0
_emails = itertools.count()


def make_settings(database_url: str, redis_url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": ACCESS_SECRET,
        "JWT_REFRESH_SECRET": REFRESH_SECRET,
        "APP_ENVIRONMENT": "test",
        "BUILTIN_WORKERS": 0,
        "POOL_SIZE": 4,
        "HEALTH_CHECK_TIMEOUT_SECONDS": 3,
        "CORS_ALLOWED_ORIGINS": ["https://app.example.test"],
    }
    values.update(overrides)
    return Settings(**values)


class Api:
    """The app's test client with a client address (for per-IP limits and the audit log)."""

    def __init__(self, app: Quart, client: TestClientProtocol, ip: str = "198.51.100.7") -> None:
        self.app = app
        self.client = client
        self.ip = ip

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        ip: str | None = None,
        **kwargs: Any,
    ) -> Any:
        sent = Headers(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        return await self.client.open(
            path,
            method=method,
            headers=sent,
            scope_base={"client": (ip or self.ip, 40000)},
            **kwargs,
        )

    async def get(self, path: str, **kwargs: Any) -> Any:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Any:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Any:
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Any:
        return await self.request("DELETE", path, **kwargs)


@contextlib.asynccontextmanager
async def running_app(
    database_url: str, redis_url: str | None, *, fast_path: bool = True, **overrides: Any
) -> AsyncIterator[Api]:
    """The app with its lifespan running (pools, engine), and a client for it."""
    app = create_app(
        make_settings(database_url, redis_url, **overrides), submit_fast_path=fast_path
    )
    async with app.test_app() as test_app:
        yield Api(app, test_app.test_client())


def new_email(prefix: str = "user") -> str:
    return f"{prefix}{next(_emails)}@example.test"


async def register(api: Api, email: str | None = None, org: str = "Acme") -> dict[str, str]:
    """A new organisation and its admin; returns ids, email, and access/refresh tokens."""
    email = email or new_email()
    created = await api.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "organization_name": org},
    )
    assert created.status_code == 201, await created.get_data()
    ids = (await created.get_json())["data"]
    tokens = await login(api, email)
    return {**ids, "email": email, **tokens}


async def login(api: Api, email: str, password: str = PASSWORD) -> dict[str, str]:
    response = await api.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, await response.get_data()
    data = (await response.get_json())["data"]
    return {"access_token": data["access_token"], "refresh_token": data["refresh_token"]}


async def error_code(response: Any) -> str:
    body = await response.get_json()
    assert body["success"] is False, body
    code: str = body["error"]["code"]
    return code


async def wait_for_job_status(api: Api, token: str, job_id: str, *statuses: str) -> dict[str, Any]:
    """Poll GET /jobs/{id} (bounded) until the job is in one of `statuses`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT_SECONDS
    while True:
        response = await api.get(f"/api/v1/jobs/{job_id}", token=token)
        job: dict[str, Any] = (await response.get_json())["data"]
        if job["status"] in statuses:
            return job
        if loop.time() > deadline:
            raise AssertionError(f"job stayed {job['status']}; wanted {statuses}")
        await asyncio.sleep(0.05)
