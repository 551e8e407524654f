"""Security headers, CORS, rate limits, the audit log and what reaches the logs."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest
from api_support import ACCESS_SECRET, PASSWORD, REFRESH_SECRET, error_code, register, running_app
from werkzeug.datastructures import Headers

ALLOWED = "https://app.example.test"


@pytest.mark.parametrize("path", ["/health", "/api/v1/jobs", "/no/such/route"])
async def test_security_headers_on_every_response(
    database_url: str, redis_url: str, path: str
) -> None:
    csp = "default-src 'none'; frame-ancestors 'none'"
    async with running_app(database_url, redis_url, SECURITY_CSP=csp) as api:
        response = await api.get(path)
    headers = response.headers
    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert headers["Content-Security-Policy"] == csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Request-ID"]


async def test_hsts_follows_its_setting(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url, SECURITY_HSTS=False) as api:
        response = await api.get("/health")
    assert "Strict-Transport-Security" not in response.headers


async def test_cors_allows_exactly_the_configured_origins(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        preflight = {"Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization, content-type"}
        allowed = await api.request(
            "OPTIONS", "/api/v1/jobs", headers={"Origin": ALLOWED, **preflight}
        )
        refused = await api.request(
            "OPTIONS", "/api/v1/jobs", headers={"Origin": "https://evil.example", **preflight}
        )
        simple_allowed = await api.get("/health", headers={"Origin": ALLOWED})
        simple_refused = await api.get("/health", headers={"Origin": "https://evil.example"})
        lookalike = await api.get("/health", headers={"Origin": ALLOWED + ".evil.example"})
    assert allowed.status_code == 204
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
    assert "authorization" in allowed.headers["Access-Control-Allow-Headers"].lower()
    assert "Origin" in allowed.headers.get_all("Vary")
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert simple_allowed.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Access-Control-Allow-Origin" not in simple_refused.headers
    assert "Access-Control-Allow-Origin" not in lookalike.headers


async def test_a_wildcard_origin_setting_does_what_it_says(
    database_url: str, redis_url: str
) -> None:
    """Outside production `*` is honoured (production refuses it), so checks can see it."""
    async with running_app(database_url, redis_url, CORS_ALLOWED_ORIGINS=["*"]) as api:
        response = await api.get("/health", headers={"Origin": "https://evil.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_rate_limit_gives_429_with_retry_after(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url, RATE_LIMIT_PER_MINUTE=3) as api:
        account = await register(api)  # register and login count against this client's IP
        token = account["access_token"]
        responses = [
            await api.get("/api/v1/jobs", token=token, ip="192.0.2.10") for _ in range(4)
        ]
        other_ip_same_user = await api.get("/api/v1/jobs", token=token, ip="192.0.2.11")
    first, *_, limited = responses
    assert [r.status_code for r in responses[:3]] == [200, 200, 200]
    assert first.headers["X-RateLimit-Limit"] == "3"
    assert first.headers["X-RateLimit-Remaining"] == "2"
    assert int(first.headers["X-RateLimit-Reset"]) > 0
    assert limited.status_code == 429
    assert await error_code(limited) == "RATE_LIMIT_EXCEEDED"
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    # The credential's own window is spent too, whatever address it comes from.
    assert other_ip_same_user.status_code == 429


async def test_rate_limit_counts_per_client_ip(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url, RATE_LIMIT_PER_MINUTE=2) as api:
        codes = [
            (await api.post("/api/v1/auth/login", json={"email": "x@y.zz", "password": "p"},
                            ip="192.0.2.20")).status_code
            for _ in range(3)
        ]
        elsewhere = await api.post(
            "/api/v1/auth/login", json={"email": "x@y.zz", "password": "p"}, ip="192.0.2.21"
        )
    assert codes == [401, 401, 429]
    assert elsewhere.status_code == 401
    conn = await asyncpg.connect(database_url)
    try:
        audited = await conn.fetch("SELECT status_code FROM audit_log ORDER BY id")
    finally:
        await conn.close()
    # Refused by the limiter, a call did nothing and leaves no row (floods cost no writes).
    assert [r["status_code"] for r in audited] == [401, 401, 401]


async def test_forwarded_for_is_believed_only_from_trusted_proxies(
    database_url: str, redis_url: str
) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.9, 10.1.2.3"}
    async with running_app(
        database_url, redis_url, TRUSTED_PROXIES="10.0.0.0/8", RATE_LIMIT_PER_MINUTE=1
    ) as api:
        via_proxy = [
            await api.post("/api/v1/queues", json={}, headers=forwarded, ip="10.0.0.5")
            for _ in range(2)
        ]
        # Another client behind the same proxy has its own window.
        neighbour = await api.post(
            "/api/v1/queues", json={}, headers={"X-Forwarded-For": "203.0.113.10"}, ip="10.0.0.5"
        )
        # A direct client cannot pick its address with the header.
        spoofed = await api.post("/api/v1/queues", json={}, headers=forwarded, ip="192.0.2.50")
    conn = await asyncpg.connect(database_url)
    try:
        ips = [str(r["source_ip"]) for r in await conn.fetch(
            "SELECT source_ip FROM audit_log ORDER BY id")]
    finally:
        await conn.close()
    assert [r.status_code for r in via_proxy] == [401, 429]
    assert neighbour.status_code == 401
    assert spoofed.status_code == 401
    assert ips == ["203.0.113.9", "203.0.113.10", "192.0.2.50"]  # the 429 left no row


async def test_every_mutating_call_leaves_an_audit_row(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        account = await register(api)
        token = account["access_token"]
        submitted = await api.post(
            "/api/v1/jobs",
            token=token,
            json={"queue_name": "default", "job_type": "t", "payload": {}},
            headers={"X-Request-ID": "audit-me-1"},
        )
        job_id = (await submitted.get_json())["data"]["id"]
        await api.post(f"/api/v1/jobs/{job_id}/retry", token=token)  # 409, audited too
        await api.get("/api/v1/jobs", token=token)  # reads are not audited
        await api.post("/api/v1/queues", json={"name": "anon"})  # 401, anonymous
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT * FROM audit_log ORDER BY id")
    finally:
        await conn.close()
    actions = [(r["action"], r["status_code"]) for r in rows]
    assert actions == [
        ("POST /api/v1/auth/register", 201),
        ("POST /api/v1/auth/login", 200),
        ("POST /api/v1/jobs", 201),
        ("POST /api/v1/jobs/<uuid:job_id>/retry", 409),
        ("POST /api/v1/queues", 401),
    ]
    submit = rows[2]
    assert submit["actor"] == f"user:{account['user_id']}"
    assert submit["organization_id"] == uuid.UUID(account["organization_id"])
    assert submit["target"] == job_id
    assert str(submit["source_ip"]) == "198.51.100.7"
    assert submit["request_id"] == "audit-me-1"
    assert rows[3]["target"] == job_id
    assert rows[4]["actor"] == "anonymous" and rows[4]["organization_id"] is None


async def test_secrets_never_reach_the_log(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    log_file = tmp_path / "app.log"
    async with running_app(database_url, redis_url, LOG_FILE_PATH=log_file) as api:
        account = await register(api)
        key = (
            await (
                await api.post(
                    "/api/v1/api-keys",
                    token=account["access_token"],
                    json={"name": "k", "permissions": ["job:read"]},
                )
            ).get_json()
        )["data"]["key"]
        await api.get("/api/v1/jobs", headers={"X-API-Key": key})
        await api.post("/api/v1/auth/refresh", json={"refresh_token": account["refresh_token"]})
        await api.post("/api/v1/auth/login", json={"email": account["email"], "password": "bad-1"})
        # A careless caller logging secrets by name or inside text is redacted too.
        from reference_server.observability import get_logger

        get_logger("test").info(
            "careless", password=PASSWORD, detail=f"dsn={database_url} key={key}"
        )
    text = log_file.read_text()
    assert '"message":"request"' in text and '"message":"careless"' in text
    for secret in (
        PASSWORD,
        "bad-1",
        account["access_token"],
        account["refresh_token"],
        key,
        ACCESS_SECRET,
        REFRESH_SECRET,
        database_url,
    ):
        assert secret not in text


async def test_unwritable_log_file_keeps_serving(database_url: str, redis_url: str) -> None:
    async with running_app(
        database_url, redis_url, LOG_FILE_PATH=Path("/proc/no-such-dir/app.log")
    ) as api:
        response = await api.get("/health")
    assert response.status_code == 200


async def test_forwarded_for_lines_are_joined_and_read_from_the_right(
    database_url: str, redis_url: str
) -> None:
    """A proxy that appends its own X-Forwarded-For line (HAProxy option forwardfor) leaves the
    client's own line first: the client must not choose its address with it."""

    def lines(n: int) -> Headers:
        return Headers([("X-Forwarded-For", f"198.51.100.{n}"), ("X-Forwarded-For", "203.0.113.9")])

    async with running_app(
        database_url, redis_url, TRUSTED_PROXIES="10.0.0.0/8", RATE_LIMIT_PER_MINUTE=3
    ) as api:
        answers = [
            await api.post("/api/v1/queues", json={}, headers=lines(n), ip="10.0.0.5")
            for n in range(5)
        ]
    async with running_app(database_url, redis_url, TRUSTED_PROXIES="10.0.0.0/8") as api:
        account = await register(api)
        submitted = await api.post(
            "/api/v1/jobs",
            json={"queue_name": "default", "job_type": "t", "payload": {}},
            token=account["access_token"],
            headers=lines(7),
            ip="10.0.0.5",
        )
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT action, source_ip FROM audit_log WHERE action LIKE 'POST /api/v1/%' "
            "AND action NOT LIKE '%/auth/%' ORDER BY id"
        )
    finally:
        await conn.close()
    assert [r.status_code for r in answers] == [401, 401, 401, 429, 429]
    assert submitted.status_code == 201
    assert {str(r["source_ip"]) for r in rows} == {"203.0.113.9"}
    assert len(rows) == 4
