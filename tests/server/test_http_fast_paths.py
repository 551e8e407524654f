"""The HTTP hot path's shortcuts keep their behaviour: batched audit rows, cached token checks,
EVALSHA rate limits, cheap request ids and the redaction pre-filter."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio
from api_support import ACCESS_SECRET, REFRESH_SECRET, register, running_app

from reference_server import answers
from reference_server.exceptions import (
    AuthenticationFailed,
    RateLimited,
    ServiceUnavailable,
    TokenExpired,
)
from reference_server.observability import (
    REDACTED,
    SECRET_VALUE_PATTERNS,
    URL_USERINFO,
    Redactor,
)
from reference_server.ratelimit import RateLimiter, RateLimitState, RedisGuard
from reference_server.security import TokenService, TokenType

CONCURRENT = 20


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    connection = redis.asyncio.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


async def test_concurrent_mutating_requests_each_leave_their_audit_row(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        account = await register(api)
        token = account["access_token"]
        responses = await asyncio.gather(
            *(
                api.post(
                    "/api/v1/jobs",
                    token=token,
                    json={"queue_name": "default", "job_type": "t", "payload": {"n": n}},
                    headers={"X-Request-ID": f"batch-{n}"},
                )
                for n in range(CONCURRENT)
            )
        )
        job_of = {}
        for n, response in enumerate(responses):
            assert response.status_code == 201
            job_of[f"batch-{n}"] = (await response.get_json())["data"]["id"]
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT * FROM audit_log WHERE request_id LIKE 'batch-%' ORDER BY id"
        )
    finally:
        await conn.close()
    assert sorted(r["request_id"] for r in rows) == sorted(job_of)
    for row in rows:
        assert row["action"] == "POST /api/v1/jobs" and row["status_code"] == 201
        assert row["target"] == job_of[row["request_id"]]
        assert row["actor"] == f"user:{account['user_id']}"
        assert str(row["source_ip"]) == "198.51.100.7"


def _tokens() -> TokenService:
    return TokenService(
        access_secret=ACCESS_SECRET,
        refresh_secret=REFRESH_SECRET,
        access_minutes=15,
        refresh_minutes=60,
    )


def test_a_verified_access_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = _tokens()
    pair = tokens.issue_pair(uuid.uuid4(), uuid.uuid4(), frozenset({"job:read"}))
    first = tokens.verify(pair.access_token, TokenType.ACCESS)
    assert tokens.verify(pair.access_token, TokenType.ACCESS) == first  # served from memory
    later = datetime.now(UTC) + timedelta(minutes=20)

    class Later(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return later

    # Both clocks move on: the cache's and PyJWT's own.
    monkeypatch.setattr("reference_server.security.time.time", lambda: later.timestamp())
    monkeypatch.setattr("jwt.api_jwt.datetime", Later)
    with pytest.raises(TokenExpired):
        tokens.verify(pair.access_token, TokenType.ACCESS)


def test_a_tampered_token_is_not_taken_for_a_verified_one() -> None:
    tokens = _tokens()
    pair = tokens.issue_pair(uuid.uuid4(), uuid.uuid4(), frozenset({"job:read"}))
    tokens.verify(pair.access_token, TokenType.ACCESS)
    head, payload, signature = pair.access_token.split(".")
    forged = ".".join((head, payload, ("A" if signature[0] != "A" else "B") + signature[1:]))
    with pytest.raises(AuthenticationFailed):
        tokens.verify(forged, TokenType.ACCESS)
    # A refresh token is never answered from the access tokens' memory.
    with pytest.raises(AuthenticationFailed):
        tokens.verify(pair.access_token, TokenType.REFRESH)


async def test_rate_limit_survives_redis_forgetting_its_script(client: redis.asyncio.Redis) -> None:
    limiter = RateLimiter(RedisGuard(client), per_minute=3, enabled=True, fail_open=False)
    first = await limiter.hit("user:a", "ip:192.0.2.1")
    await client.script_flush()
    second = await limiter.hit("user:a", "ip:192.0.2.1")
    assert first is not None and second is not None
    assert (first.remaining, second.remaining) == (2, 1)
    members = await client.zrange("rl:user:a", 0, -1)
    assert len(set(members)) == 2


def test_request_ids_are_distinct_32_hex_digits() -> None:
    ids = {answers.request_ids.next() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def _scrub_without_prefilter(text: str) -> str:
    for pattern in SECRET_VALUE_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: BEARER abc.def",
        "postgresql://user:hunter2@db/app",
        "REDIS://:pw@cache:6379/0",
        "key TF_" + "a" * 32,
        "key tf_" + "a" * 32 + " used",
        "token eyJhbGciOi.eyJzdWIi.c2ln",
        "stripe sk_live_abc123 rk_test_x whsec_xyz",
        "/api/v1/jobs/6f1c2a9e-0000-4000-8000-000000000000",
    ],
)
def test_redaction_prefilter_changes_nothing(text: str) -> None:
    assert Redactor().scrub_text(text) == _scrub_without_prefilter(text)


async def test_concurrent_rate_limit_checks_count_each_request(client: redis.asyncio.Redis) -> None:
    limiter = RateLimiter(RedisGuard(client), per_minute=5, enabled=True, fail_open=False)
    outcomes = await asyncio.gather(
        *(limiter.hit("user:b", f"ip:192.0.2.{n}") for n in range(12)),
        return_exceptions=True,
    )
    admitted = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, RateLimited)]
    assert (len(admitted), len(refused)) == (5, 7)
    assert sorted(o.remaining for o in admitted if o is not None) == [0, 1, 2, 3, 4]
    assert await client.zcard("rl:user:b") == 5


async def test_one_callers_concurrent_checks_share_a_call_and_count_each(
    client: redis.asyncio.Redis,
) -> None:
    limiter = RateLimiter(RedisGuard(client), per_minute=4, enabled=True, fail_open=False)
    # Same keys (one caller, one address) and, in the same burst, a second caller.
    outcomes = await asyncio.gather(
        *(limiter.hit("user:c", "ip:192.0.2.9") for _ in range(9)),
        *(limiter.hit("user:d", "ip:192.0.2.10") for _ in range(3)),
        return_exceptions=True,
    )
    mine, theirs = outcomes[:9], outcomes[9:]
    admitted = [o for o in mine if not isinstance(o, BaseException)]
    assert sum(isinstance(o, RateLimited) for o in mine) == 5
    assert sorted(o.remaining for o in admitted if o is not None) == [0, 1, 2, 3]
    assert all(not isinstance(o, BaseException) for o in theirs)
    assert sorted(o.remaining for o in theirs if not isinstance(o, BaseException) and o) == [
        1,
        2,
        3,
    ]
    assert await client.zcard("rl:user:c") == 4
    assert await client.zcard("rl:ip:192.0.2.10") == 3


async def test_checks_of_a_batch_are_settled_each_in_order(client: redis.asyncio.Redis) -> None:
    limiter = RateLimiter(RedisGuard(client), per_minute=2, enabled=True, fail_open=False)
    outcomes = await limiter.hit_each([("user:e", "ip:192.0.2.20")] * 3 + [("user:f",)])
    assert [type(o).__name__ for o in outcomes] == [
        "RateLimitState",
        "RateLimitState",
        "RateLimited",
        "RateLimitState",
    ]
    assert [o.remaining for o in outcomes if isinstance(o, RateLimitState)] == [1, 0, 1]


async def test_checks_of_a_batch_follow_the_failure_mode_when_redis_is_gone() -> None:
    # Nothing listens on port 1: every call is refused, as with Redis down.
    client = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        closed = RateLimiter(RedisGuard(client), per_minute=5, enabled=True, fail_open=False)
        refused = await closed.hit_each([("user:g",), ("user:h",)])
        assert [o.code for o in refused if isinstance(o, ServiceUnavailable)] == [
            "SERVICE_UNAVAILABLE"
        ] * 2
        opened = RateLimiter(RedisGuard(client), per_minute=5, enabled=True, fail_open=True)
        assert await opened.hit_each([("user:g",), ("user:h",)]) == [None, None]
    finally:
        await client.aclose()


async def test_api_key_use_is_recorded_at_most_once_a_minute(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        created = await api.post(
            "/api/v1/api-keys", token=token, json={"name": "w", "permissions": ["job:read"]}
        )
        key_info = (await created.get_json())["data"]
        conn = await asyncpg.connect(database_url)
        try:
            used_at = "SELECT last_used_at FROM api_keys WHERE id = $1"
            key_id = uuid.UUID(key_info["id"])
            assert await conn.fetchval(used_at, key_id) is None
            first = await api.get("/api/v1/jobs", headers={"X-API-Key": key_info["key"]})
            stamped = await conn.fetchval(used_at, key_id)
            second = await api.get("/api/v1/jobs", headers={"X-API-Key": key_info["key"]})
            assert await conn.fetchval(used_at, key_id) == stamped
            # Older than a minute: the next use records itself again.
            await conn.execute(
                "UPDATE api_keys SET last_used_at = now() - interval '2 minutes' WHERE id = $1",
                key_id,
            )
            third = await api.get("/api/v1/jobs", headers={"X-API-Key": key_info["key"]})
            restamped = await conn.fetchval(used_at, key_id)
        finally:
            await conn.close()
    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    assert stamped is not None and restamped is not None and restamped > stamped
