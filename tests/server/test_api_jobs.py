"""Jobs, queues and the worker protocol over HTTP, each scoped to the caller's organisation."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from api_support import error_code, register, running_app, wait_for_job_status

SMOKE_JOB = {"queue_name": "default", "job_type": "test_job", "payload": {"test": "data"},
             "priority": 5}


async def test_smoke_job_of_the_guide_succeeds(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url, BUILTIN_WORKERS=1) as api:
        token = (await register(api))["access_token"]
        response = await api.post("/api/v1/jobs", token=token, json=SMOKE_JOB)
        assert response.status_code == 201
        body = await response.get_json()
        assert body["success"] is True and body["request_id"] and body["timestamp"]
        job = body["data"]
        assert job["queue_name"] == "default" and job["priority"] == 5
        finished = await wait_for_job_status(api, token, job["id"], "succeeded", "failed", "dead")
    assert finished["status"] == "succeeded"
    assert finished["completed_at"] is not None


async def test_idempotency_key_returns_the_existing_job_with_200(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        job = {**SMOKE_JOB, "idempotency_key": "order-42"}
        first = await api.post("/api/v1/jobs", token=token, json=job)
        second = await api.post("/api/v1/jobs", token=token, json=job)
    assert first.status_code == 201
    assert second.status_code == 200
    assert (await first.get_json())["data"]["id"] == (await second.get_json())["data"]["id"]


async def test_list_filters_and_paginates(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        batch = await api.post(
            "/api/v1/jobs/batch",
            token=token,
            json={"jobs": [{**SMOKE_JOB, "job_type": f"t{i % 2}"} for i in range(5)]},
        )
        assert batch.status_code == 201
        assert len((await batch.get_json())["data"]["ids"]) == 5
        page = await api.get("/api/v1/jobs?limit=2&page=2", token=token)
        filtered = await api.get("/api/v1/jobs?job_type=t1&status=pending", token=token)
    data = (await page.get_json())["data"]
    assert data["pagination"] == {"page": 2, "limit": 2, "total": 5, "pages": 3}
    assert len(data["jobs"]) == 2
    only_t1 = (await filtered.get_json())["data"]
    assert only_t1["pagination"]["total"] == 2
    assert {j["job_type"] for j in only_t1["jobs"]} == {"t1"}


async def test_cancel_and_retry_rules(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        job_id = (await (await api.post("/api/v1/jobs", token=token, json=SMOKE_JOB)).get_json())[
            "data"]["id"]
        retry_pending = await api.post(f"/api/v1/jobs/{job_id}/retry", token=token)
        cancelled = await api.post(f"/api/v1/jobs/{job_id}/cancel", token=token)
        cancel_again = await api.post(f"/api/v1/jobs/{job_id}/cancel", token=token)
    assert retry_pending.status_code == 409
    assert await error_code(retry_pending) == "RESOURCE_CONFLICT"
    assert cancelled.status_code == 200
    assert (await cancelled.get_json())["data"]["status"] == "cancelled"
    assert cancel_again.status_code == 409


async def test_unknown_queue_and_unknown_ids_are_404(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        queue = await api.post(
            "/api/v1/jobs", token=token, json={**SMOKE_JOB, "queue_name": "missing"}
        )
        unknown = await api.get(f"/api/v1/jobs/{uuid.uuid4()}", token=token)
        not_a_uuid = await api.get("/api/v1/jobs/123", token=token)
    assert queue.status_code == 404
    assert unknown.status_code == 404
    assert await error_code(unknown) == "RESOURCE_NOT_FOUND"
    assert not_a_uuid.status_code == 404


async def test_another_tenants_objects_are_404(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        alice = await register(api, org="Alice Co")
        bob = await register(api, org="Bob Co")
        job_id = (
            await (await api.post("/api/v1/jobs", token=alice["access_token"], json=SMOKE_JOB))
            .get_json()
        )["data"]["id"]
        await api.post("/api/v1/queues", token=alice["access_token"], json={"name": "private"})
        worker = await api.post(
            "/api/v1/workers",
            token=alice["access_token"],
            json={"name": "w", "queues": ["default"], "max_concurrent_jobs": 1},
        )
        worker_id = (await worker.get_json())["data"]["id"]
        bob_token = bob["access_token"]
        reads = [
            await api.get(f"/api/v1/jobs/{job_id}", token=bob_token),
            await api.post(f"/api/v1/jobs/{job_id}/cancel", token=bob_token),
            await api.get("/api/v1/queues/private", token=bob_token),
            await api.delete("/api/v1/queues/private", token=bob_token),
            await api.post(f"/api/v1/workers/{worker_id}/heartbeat", token=bob_token),
            await api.post(
                "/api/v1/jobs", token=bob_token, json={**SMOKE_JOB, "queue_name": "private"}
            ),
        ]
        listed = await (await api.get("/api/v1/jobs", token=bob_token)).get_json()
        still_there = await api.get(f"/api/v1/jobs/{job_id}", token=alice["access_token"])
    assert [r.status_code for r in reads] == [404] * len(reads)
    assert listed["data"]["jobs"] == []
    assert (await still_there.get_json())["data"]["status"] == "pending"


async def test_queue_lifecycle(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        created = await api.post(
            "/api/v1/queues",
            token=token,
            json={"name": "emails", "priority": 3, "settings": {"max_attempts": 5}},
        )
        duplicate = await api.post("/api/v1/queues", token=token, json={"name": "emails"})
        updated = await api.put(
            "/api/v1/queues/emails", token=token, json={"description": "outbound mail"}
        )
        paused = await api.post("/api/v1/queues/emails/pause", token=token)
        submitted = await api.post(
            "/api/v1/jobs", token=token, json={**SMOKE_JOB, "queue_name": "emails"}
        )
        stats = await api.get("/api/v1/queues/emails/stats", token=token)
        busy_delete = await api.delete("/api/v1/queues/emails", token=token)
        resumed = await api.post("/api/v1/queues/emails/resume", token=token)
        listed = await api.get("/api/v1/queues", token=token)
        job_id = (await submitted.get_json())["data"]["id"]
        await api.post(f"/api/v1/jobs/{job_id}/cancel", token=token)
        deleted = await api.delete("/api/v1/queues/emails", token=token)
        gone = await api.get("/api/v1/queues/emails", token=token)
    assert created.status_code == 201
    queue = (await created.get_json())["data"]
    assert queue["settings"]["max_attempts"] == 5 and queue["settings"]["retention_days"] == 30
    assert duplicate.status_code == 409
    assert (await updated.get_json())["data"]["description"] == "outbound mail"
    assert (await updated.get_json())["data"]["priority"] == 3
    assert (await paused.get_json())["data"]["paused"] is True
    assert submitted.status_code == 201  # a paused queue accepts jobs
    assert stats.status_code == 200
    assert busy_delete.status_code == 409
    assert (await resumed.get_json())["data"]["paused"] is False
    names = {q["name"] for q in (await listed.get_json())["data"]["queues"]}
    assert names == {"default", "emails"}
    assert deleted.status_code == 204
    assert gone.status_code == 404


async def test_worker_protocol_lease_complete_and_fail(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        registered = await api.post(
            "/api/v1/workers",
            token=token,
            json={"name": "ext-1", "queues": ["default"], "max_concurrent_jobs": 2},
        )
        assert registered.status_code == 201
        worker = (await registered.get_json())["data"]
        assert worker["heartbeat_interval_seconds"] > 0
        for job_type in ("a", "b"):
            await api.post("/api/v1/jobs", token=token, json={**SMOKE_JOB, "job_type": job_type})
        lease = await api.post(
            f"/api/v1/workers/{worker['id']}/lease", token=token, json={"max_jobs": 2}
        )
        leased = (await lease.get_json())["data"]["jobs"]
        assert {j["status"] for j in leased} == {"processing"}
        first, second = leased
        stranger = str(uuid.uuid4())
        wrong_worker = await api.post(
            f"/api/v1/jobs/{first['id']}/complete", token=token, json={"worker_id": stranger}
        )
        done = await api.post(
            f"/api/v1/jobs/{first['id']}/complete",
            token=token,
            json={"worker_id": worker["id"], "output": {"ok": True}},
        )
        failed = await api.post(
            f"/api/v1/jobs/{second['id']}/fail",
            token=token,
            json={"worker_id": worker["id"], "error_message": "boom", "retryable": False},
        )
        heartbeat = await api.post(f"/api/v1/workers/{worker['id']}/heartbeat", token=token)
        workers = await api.get("/api/v1/workers", token=token)
        empty = await api.post(
            f"/api/v1/workers/{worker['id']}/lease",
            token=token,
            json={"max_jobs": 1, "wait_seconds": 0},
        )
    assert wrong_worker.status_code == 409
    assert (await done.get_json())["data"]["status"] == "succeeded"
    assert (await done.get_json())["data"]["output"] == {"ok": True}
    assert (await failed.get_json())["data"]["status"] in {"failed", "dead"}
    assert heartbeat.status_code == 200
    listed = (await workers.get_json())["data"]["workers"]
    assert [w["status"] for w in listed] == ["online"]
    assert (await empty.get_json())["data"]["jobs"] == []


async def test_scheduled_for_in_the_future_is_scheduled(database_url: str, redis_url: str) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        response = await api.post(
            "/api/v1/jobs", token=token, json={**SMOKE_JOB, "scheduled_for": later}
        )
        naive = await api.post(
            "/api/v1/jobs", token=token, json={**SMOKE_JOB, "scheduled_for": "2030-01-01T00:00:00"}
        )
        key = await api.post(
            "/api/v1/api-keys",
            token=token,
            json={"name": "temp", "permissions": ["job:read"], "expires_at": later},
        )
    assert response.status_code == 201
    job = (await response.get_json())["data"]
    assert job["status"] == "scheduled"
    assert datetime.fromisoformat(job["scheduled_for"]) == datetime.fromisoformat(later)
    assert naive.status_code == 400  # a time without its offset is ambiguous
    assert key.status_code == 201
    assert (await key.get_json())["data"]["expires_at"] is not None
