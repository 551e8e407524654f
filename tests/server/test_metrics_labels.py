"""Metric label values stay bounded whatever methods, job types and queues clients choose."""

from __future__ import annotations

from api_support import register, running_app
from prometheus_client.parser import text_string_to_metric_families

SCRAPE_LIMIT_BYTES = 256 * 1024


async def test_two_thousand_methods_and_job_types_keep_metrics_small(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url, RATE_LIMIT_PER_MINUTE=100_000) as api:
        account = await register(api)
        token = account["access_token"]
        for n in range(1000):  # unauthenticated, on an unmatched route and on a matched one
            await api.request(f"X{n}", "/no/such/route")
            await api.request(f"Y{n}", "/health")
        for batch in range(2):
            jobs = [
                {"queue_name": "default", "job_type": f"t{batch}-{n}", "payload": {}}
                for n in range(1000)
            ]
            made = await api.post("/api/v1/jobs/batch", json={"jobs": jobs}, token=token)
            assert made.status_code == 201
        scraped = await api.get("/metrics")
        body = await scraped.get_data()
    assert scraped.status_code == 200
    assert len(body) < SCRAPE_LIMIT_BYTES
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    methods = {
        s.labels["method"] for s in families["taskforge_http_request_duration_seconds"].samples
    }
    assert "other" in methods and not any(m.startswith(("X", "Y")) for m in methods)
    types = {
        s.labels["job_type"]
        for s in families["taskforge_job_submitted"].samples
        if s.labels.get("queue") == "default"
    }
    assert "other" in types
    folded = {
        s.labels["label"]: s.value
        for s in families["taskforge_metric_labels_folded"].samples
        if s.name.endswith("_total")
    }
    assert folded["job_type"] >= 1


async def test_production_serves_the_metrics_to_private_networks_or_the_metrics_token(
    database_url: str, redis_url: str
) -> None:
    """The metrics name every tenant's queues and job types: no anonymous public scrape."""
    token = "m" + "Zq7vK2pX9rT4wL8nB3cF6hJ1dG5sA0yE"
    async with running_app(
        database_url,
        redis_url,
        APP_ENVIRONMENT="production",
        TRUSTED_PROXIES="10.0.0.5/32",
        METRICS_TOKEN=token,
    ) as api:
        public = await api.get("/metrics")
        loopback = await api.get("/metrics", ip="127.0.0.1")
        private = await api.get("/metrics", ip="192.168.3.4")
        with_token = await api.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        wrong_token = await api.get("/metrics", headers={"Authorization": "Bearer nope"})
        via_proxy = await api.get(
            "/metrics", ip="10.0.0.5", headers={"X-Forwarded-For": "198.51.100.20"}
        )
    async with running_app(database_url, redis_url) as api:
        elsewhere = await api.get("/metrics")
    assert [public.status_code, wrong_token.status_code, via_proxy.status_code] == [404] * 3
    assert [loopback.status_code, private.status_code, with_token.status_code] == [200] * 3
    assert b"taskforge_" not in await public.get_data()
    assert elsewhere.status_code == 200  # outside production, by default, anyone
