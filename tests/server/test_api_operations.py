"""Operations endpoints and the generic HTTP behaviour: health, ready, metrics, envelopes, ids."""

from __future__ import annotations

import json

from api_support import PASSWORD, error_code, register, running_app
from prometheus_client.parser import text_string_to_metric_families

from reference_server.devservices import EmbeddedRedis

CONTRACT_METRICS = {
    "taskforge_job_submitted",
    "taskforge_job_processed",
    "taskforge_job_processing_duration_seconds",
    "taskforge_job_wait_duration_seconds",
    "taskforge_queue_length",
    "taskforge_worker_active_count",
    "taskforge_http_request_duration_seconds",
    "taskforge_db_pool_connections",
    "taskforge_redis_up",
}


async def test_health_reports_each_check_and_the_migration_version(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        response = await api.get("/health")
        body = await response.get_json()
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"] == "ok"
    migrations = body["checks"]["migrations"]
    assert migrations["current"] is True
    assert migrations["applied_version"] == migrations["latest_version"]
    assert body["version"]


async def test_ready_when_database_reachable_and_migrated(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        response = await api.get("/ready")
    assert response.status_code == 200
    assert (await response.get_json())["ready"] is True


async def test_redis_down_degrades_health_but_jobs_still_submit(database_url: str) -> None:
    private_redis = EmbeddedRedis().start()
    try:
        async with running_app(database_url, private_redis.url) as api:
            account = await register(api)
            private_redis.stop()
            health = await api.get("/health")
            submitted = await api.post(
                "/api/v1/jobs",
                token=account["access_token"],
                json={"queue_name": "default", "job_type": "test_job", "payload": {"a": 1}},
            )
            metrics_text = (await (await api.get("/metrics")).get_data()).decode()
    finally:
        private_redis.stop()
    assert health.status_code == 200
    body = await health.get_json()
    assert body["status"] == "degraded"
    assert body["checks"]["redis"] == "down"
    assert submitted.status_code == 201
    assert "X-RateLimit-Limit" not in submitted.headers  # fail-open: nothing was counted
    assert "taskforge_redis_up 0.0" in metrics_text


async def test_metrics_carry_the_contract_names_and_parse(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        account = await register(api)
        await api.post(
            "/api/v1/jobs",
            token=account["access_token"],
            json={"queue_name": "default", "job_type": "test_job", "payload": {}},
        )
        response = await api.get("/metrics")
        text = (await response.get_data()).decode()
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(text)}
    missing = CONTRACT_METRICS - names
    assert not missing, missing
    assert 'taskforge_queue_length{queue="default",status="pending"} 1.0' in text


async def test_metrics_endpoint_follows_settings(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url, METRICS_ENDPOINT="/internal/prom") as api:
        moved = await api.get("/internal/prom")
        old = await api.get("/metrics")
    assert moved.status_code == 200
    assert old.status_code == 404
    async with running_app(database_url, redis_url, METRICS_ENABLED=False) as api:
        disabled = await api.get("/metrics")
    assert disabled.status_code == 404
    assert await error_code(disabled) == "RESOURCE_NOT_FOUND"


async def test_unknown_route_and_wrong_method_get_envelopes(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        missing = await api.get("/api/v1/nothing-here")
        wrong_method = await api.request("PATCH", "/health")
    assert missing.status_code == 404
    assert await error_code(missing) == "RESOURCE_NOT_FOUND"
    assert wrong_method.status_code == 405
    assert await error_code(wrong_method) == "VALIDATION_001"
    assert "GET" in wrong_method.headers["Allow"]


async def test_request_id_is_echoed_when_sane_else_generated(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        echoed = await api.get("/health", headers={"X-Request-ID": "abc-123"})
        generated = await api.get("/health")
        insane = await api.get("/health", headers={"X-Request-ID": "x" * 500})
        error = await api.get("/api/v1/jobs", headers={"X-Request-ID": "err-1"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    assert len(generated.headers["X-Request-ID"]) >= 16
    assert insane.headers["X-Request-ID"] != "x" * 500
    assert error.headers["X-Request-ID"] == "err-1"
    assert (await error.get_json())["request_id"] == "err-1"


async def test_openapi_document_is_served(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        response = await api.get("/openapi.json")
    assert response.status_code == 200
    document = json.loads(await response.get_data())
    assert document["openapi"].startswith("3.1")
    assert "/api/v1/jobs" in document["paths"]


async def test_no_route_outside_the_contract(database_url: str, redis_url: str) -> None:
    """Quart's default /static route is not part of the API."""
    async with running_app(database_url, redis_url) as api:
        rules = {rule.rule for rule in api.app.url_map.iter_rules()}
    assert not any(rule.startswith("/static") for rule in rules)


async def test_with_redis_down_a_closed_login_throttle_refuses_logins_and_health_says_so(
    database_url: str,
) -> None:
    """Without Redis there is no lockout; production's default (closed) refuses logins then."""
    private_redis = EmbeddedRedis().start()
    try:
        async with running_app(
            database_url, private_redis.url, LOGIN_THROTTLE_FAILURE_MODE="closed"
        ) as api:
            account = await register(api)
            private_redis.stop()
            health = await api.get("/health")
            refused = await api.post(
                "/api/v1/auth/login", json={"email": account["email"], "password": PASSWORD}
            )
    finally:
        private_redis.stop()
    assert (await health.get_json())["rate_limit_failure_modes"] == {
        "requests": "open",
        "login": "closed",
    }
    assert refused.status_code == 503
    assert await error_code(refused) == "SERVICE_UNAVAILABLE"
