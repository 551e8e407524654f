"""Dependencies going away: the database (503 with Retry-After, health down) and Redis modes."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio
from api_support import error_code, register, running_app

from reference_server import ratelimit
from reference_server.devservices import EmbeddedPostgres, EmbeddedRedis
from reference_server.ratelimit import REVOKED_FAMILIES_KEY, RefreshTokenRegistry


async def test_database_down_gives_503_and_health_down_then_recovers(
    private_postgres: EmbeddedPostgres, redis_url: str
) -> None:
    job = {"queue_name": "default", "job_type": "t", "payload": {}}
    async with running_app(private_postgres.url, redis_url, HEALTH_CHECK_TIMEOUT_SECONDS=2) as api:
        token = (await register(api))["access_token"]
        private_postgres.pause()
        submitted = await api.post("/api/v1/jobs", token=token, json=job)
        listed = await api.get("/api/v1/jobs", token=token)
        health = await api.get("/health")
        ready = await api.get("/ready")
        private_postgres.resume()
        # Bounded: the pool replaces its broken connections on the next acquisitions.
        recovered = None
        for _ in range(20):
            recovered = await api.post("/api/v1/jobs", token=token, json=job)
            if recovered.status_code == 201:
                break
            await asyncio.sleep(0.25)
        health_after = await api.get("/health")
    for response in (submitted, listed):
        assert response.status_code == 503, await response.get_data()
        assert await error_code(response) == "SERVICE_UNAVAILABLE"
        assert int(response.headers["Retry-After"]) > 0
        assert b"asyncpg" not in await response.get_data()
    assert health.status_code == 503
    assert (await health.get_json())["status"] == "down"
    assert (await health.get_json())["checks"]["database"] == "down"
    assert ready.status_code == 503
    assert recovered is not None and recovered.status_code == 201
    assert health_after.status_code == 200


async def test_redis_down_in_closed_mode_refuses_with_503(database_url: str) -> None:
    private_redis = EmbeddedRedis().start()
    try:
        async with running_app(
            database_url, private_redis.url, RATE_LIMIT_FAILURE_MODE="closed"
        ) as api:
            token = (await register(api))["access_token"]
            private_redis.stop()
            refused = await api.get("/api/v1/jobs", token=token)
            health = await api.get("/health")
    finally:
        private_redis.stop()
    assert refused.status_code == 503
    assert await error_code(refused) == "SERVICE_UNAVAILABLE"
    assert "Retry-After" in refused.headers
    assert health.status_code == 200
    assert (await health.get_json())["status"] == "degraded"


async def test_refresh_needs_redis_but_access_tokens_do_not(database_url: str) -> None:
    private_redis = EmbeddedRedis().start()
    try:
        async with running_app(database_url, private_redis.url) as api:
            account = await register(api)
            private_redis.stop()
            refresh = await api.post(
                "/api/v1/auth/refresh", json={"refresh_token": account["refresh_token"]}
            )
            validate = await api.get("/api/v1/auth/validate", token=account["access_token"])
    finally:
        private_redis.stop()
    # Rotation cannot be enforced without Redis, so refresh waits rather than allowing replays.
    assert refresh.status_code == 503
    assert validate.status_code == 200


async def test_a_revocation_redis_missed_is_kept_and_written_when_it_returns(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis stops between spotting a reused refresh token and revoking its family: the family
    is refused here at once (closed, not silently dropped) and the revocation is written when
    Redis is back, so another process and the newest refresh token of the family see it."""
    private_redis = EmbeddedRedis().start()
    real_consume = RefreshTokenRegistry.consume

    async def consume_then_stop(self: RefreshTokenRegistry, jti: str, ttl: int) -> bool:
        fresh = await real_consume(self, jti, ttl)
        if not fresh:  # the reuse is spotted: Redis goes before the family is revoked
            private_redis.pause()
        return fresh

    try:
        async with running_app(database_url, private_redis.url) as api:
            account = await register(api)
            old = account["refresh_token"]
            rotated = (await (await api.post(
                "/api/v1/auth/refresh", json={"refresh_token": old}
            )).get_json())["data"]
            monkeypatch.setattr(RefreshTokenRegistry, "consume", consume_then_stop)
            replay = await api.post("/api/v1/auth/refresh", json={"refresh_token": old})
            monkeypatch.undo()
            while_down = await api.get("/api/v1/auth/validate", token=rotated["access_token"])
            private_redis.resume()  # empty: what it knew of used tokens is gone with it
            client = redis.asyncio.Redis.from_url(private_redis.url)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            written = 0
            while loop.time() < deadline and not written:  # bounded: synced each second
                written = await client.exists(REVOKED_FAMILIES_KEY)
                await asyncio.sleep(0.1)
            await client.aclose()
            newest = await api.post(
                "/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
            )
            async with running_app(database_url, private_redis.url) as other_process:
                await asyncio.sleep(ratelimit.REVOKED_SYNC_SECONDS * 2)  # its first syncs
                there = await other_process.get(
                    "/api/v1/auth/validate", token=rotated["access_token"]
                )
    finally:
        private_redis.stop()
    assert replay.status_code == 401
    assert while_down.status_code == 401
    assert written == 1
    assert newest.status_code == 401 and await error_code(newest) == "AUTH_001"
    assert there.status_code == 401
