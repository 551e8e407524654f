"""The worker protocol's batched acknowledgement and the binding of a worker to its credential."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
from api_support import Api, error_code, register, running_app

from reference_server.backoff import delay_bounds
from reference_server.models import QueueSettings

JOB = {"queue_name": "default", "job_type": "ext", "payload": {"n": 1}}


async def _worker(api: Api, token: str | None = None, **headers: str) -> str:
    registered = await api.post(
        "/api/v1/workers",
        token=token,
        headers=headers,
        json={"name": "ext", "queues": ["default"], "max_concurrent_jobs": 100},
    )
    assert registered.status_code == 201, await registered.get_data()
    worker_id: str = (await registered.get_json())["data"]["id"]
    return worker_id


async def _submit(api: Api, token: str, count: int, **fields: Any) -> list[str]:
    ids = []
    for n in range(count):
        body = {**JOB, "payload": {"n": n}, **fields}
        made = await api.post("/api/v1/jobs", token=token, json=body)
        assert made.status_code == 201, await made.get_data()
        ids.append((await made.get_json())["data"]["id"])
    return ids


async def _lease(api: Api, worker_id: str, count: int, token: str | None,
                 **headers: str) -> list[str]:
    leased = await api.post(
        f"/api/v1/workers/{worker_id}/lease", token=token, headers=headers,
        json={"max_jobs": count},
    )
    assert leased.status_code == 200, await leased.get_data()
    return [j["id"] for j in (await leased.get_json())["data"]["jobs"]]


async def _job(api: Api, token: str, job_id: str) -> dict[str, Any]:
    found = await api.get(f"/api/v1/jobs/{job_id}", token=token)
    job: dict[str, Any] = (await found.get_json())["data"]
    return job


async def test_ack_settles_successes_and_failures_and_says_which(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        other_org = (await register(api, org="Other"))["access_token"]
        worker = await _worker(api, token)
        rival = await _worker(api, token)
        done, retried, final, spent = await _submit(api, token, 4)
        assert set(await _lease(api, worker, 4, token)) == {done, retried, final, spent}
        [theirs] = await _submit(api, other_org, 1)
        [rivals] = await _submit(api, token, 1)
        assert await _lease(api, rival, 1, token) == [rivals]
        unknown = str(uuid.uuid4())
        answer = await api.post(
            f"/api/v1/workers/{worker}/ack",
            token=token,
            json={"results": [
                {"job_id": done, "status": "succeeded", "output": {"ok": True}},
                {"job_id": retried, "status": "failed", "error_message": "flaky"},
                {"job_id": final, "status": "failed", "error_message": "bad", "retryable": False},
                {"job_id": unknown, "status": "succeeded"},
                {"job_id": theirs, "status": "succeeded"},
                {"job_id": rivals, "status": "succeeded"},
                {"job_id": done, "status": "succeeded"},
            ]},
        )
        again = await api.post(
            f"/api/v1/workers/{worker}/ack",
            token=token,
            json={"results": [{"job_id": done, "status": "succeeded"},
                              {"job_id": spent, "status": "succeeded"}]},
        )
        jobs = {job_id: await _job(api, token, job_id) for job_id in (done, retried, final, spent)}
        rival_job = await _job(api, token, rivals)
    assert answer.status_code == 200
    body = (await answer.get_json())["data"]
    assert body["accepted"] == [done, retried, final]
    assert [(r["job_id"], r["code"]) for r in body["rejected"]] == [
        (unknown, "RESOURCE_NOT_FOUND"),
        (theirs, "RESOURCE_NOT_FOUND"),
        (rivals, "RESOURCE_CONFLICT"),
        (done, "RESOURCE_CONFLICT"),
    ]
    assert all(r["message"] for r in body["rejected"])
    assert (await again.get_json())["data"] == {
        "accepted": [spent],
        "rejected": [{"job_id": done, "code": "RESOURCE_CONFLICT",
                      "message": (await again.get_json())["data"]["rejected"][0]["message"]}],
    }
    assert jobs[done]["status"] == "succeeded" and jobs[done]["output"] == {"ok": True}
    assert jobs[retried]["status"] == "scheduled" and jobs[retried]["error_message"] == "flaky"
    assert jobs[final]["status"] == "dead" and jobs[final]["error_message"] == "bad"
    assert jobs[spent]["status"] == "succeeded"
    assert rival_job["status"] == "processing"  # another worker's lease is left alone


async def test_a_retried_failure_waits_the_queues_backoff(
    database_url: str, redis_url: str, pool: asyncpg.Pool
) -> None:
    settings = {"initial_retry_delay_seconds": 20, "backoff_multiplier": 3,
                "max_retry_delay_seconds": 100, "max_attempts": 3}
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        created = await api.post("/api/v1/queues", token=token,
                                 json={"name": "slow", "settings": settings})
        assert created.status_code == 201
        registered = await api.post(
            "/api/v1/workers", token=token,
            json={"name": "ext", "queues": ["slow"], "max_concurrent_jobs": 5},
        )
        worker = (await registered.get_json())["data"]["id"]
        [job_id] = await _submit(api, token, 1, queue_name="slow")
        delays = []
        for _attempt in range(2):
            await pool.execute("UPDATE jobs SET scheduled_for = now() WHERE id = $1",
                               uuid.UUID(job_id))
            assert await _lease(api, worker, 1, token) == [job_id]
            answer = await api.post(
                f"/api/v1/workers/{worker}/ack", token=token,
                json={"results": [{"job_id": job_id, "status": "failed"}]},
            )
            assert (await answer.get_json())["data"]["accepted"] == [job_id]
            job = await _job(api, token, job_id)
            assert job["status"] == "scheduled"
            due = datetime.fromisoformat(job["scheduled_for"])
            failed_at = datetime.fromisoformat(job["updated_at"])
            delays.append((due - failed_at).total_seconds())
        await pool.execute("UPDATE jobs SET scheduled_for = now() WHERE id = $1", uuid.UUID(job_id))
        assert await _lease(api, worker, 1, token) == [job_id]
        last = await api.post(
            f"/api/v1/workers/{worker}/ack", token=token,
            json={"results": [{"job_id": job_id, "status": "failed"}]},
        )
        assert (await last.get_json())["data"]["accepted"] == [job_id]
        dead = await _job(api, token, job_id)
    queue = QueueSettings().merged(settings)
    for attempt, delay in enumerate(delays, start=1):
        low, high = delay_bounds(attempt, queue)
        assert low - 0.01 <= delay <= high + 0.01, (attempt, delay, low, high)
    assert dead["status"] == "dead"  # the third attempt was the last
    assert dead["error_message"] == "failed (the worker gave no message)"


async def test_a_malformed_ack_is_refused_whole(database_url: str, redis_url: str) -> None:
    bad_bodies: list[Any] = [
        {"results": []},
        {"results": [{"job_id": str(uuid.uuid4()), "status": "succeeded"}] * 101},
        {"results": [{"job_id": "not-a-uuid", "status": "succeeded"}]},
        {"results": [{"status": "succeeded"}]},
        {"results": [{"job_id": str(uuid.uuid4()), "status": "done"}]},
        {"results": [{"job_id": str(uuid.uuid4()), "status": "succeeded", "error_message": "x"}]},
        {"results": [{"job_id": str(uuid.uuid4()), "status": "failed", "output": {}}]},
        {"results": [{"job_id": str(uuid.uuid4()), "status": "succeeded", "output": [1]}]},
        {"jobs": []},
    ]
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        worker = await _worker(api, token)
        [job_id] = await _submit(api, token, 1)
        await _lease(api, worker, 1, token)
        answers = [
            await api.post(f"/api/v1/workers/{worker}/ack", token=token, json=body)
            for body in [*bad_bodies, {"results": [
                {"job_id": job_id, "status": "succeeded"},
                {"job_id": job_id, "status": "failed", "retryable": "no"},
            ]}]
        ]
        still = await _job(api, token, job_id)
    assert [a.status_code for a in answers] == [400] * (len(bad_bodies) + 1)
    assert {await error_code(a) for a in answers} == {"VALIDATION_001"}
    assert still["status"] == "processing"  # nothing of a refused body was applied


async def test_a_worker_answers_only_to_the_credential_that_registered_it(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        made = await api.post(
            "/api/v1/api-keys", token=token,
            json={"name": "worker", "permissions": ["worker:read", "worker:write", "job:read"]},
        )
        assert made.status_code == 201, await made.get_data()
        key = {"X-API-Key": (await made.get_json())["data"]["key"]}
        by_user = await _worker(api, token)
        by_key = await _worker(api, None, **key)
        ids = await _submit(api, token, 4)
        mine = await _lease(api, by_user, 2, token)
        keys = await _lease(api, by_key, 2, None, **key)
        assert sorted(mine + keys) == sorted(ids)

        async def as_other(worker: str, job_id: str, **auth: Any) -> list[int]:
            calls = [
                api.post(f"/api/v1/workers/{worker}/heartbeat", **auth),
                api.post(f"/api/v1/workers/{worker}/lease", json={"max_jobs": 1}, **auth),
                api.post(f"/api/v1/jobs/{job_id}/complete", json={"worker_id": worker}, **auth),
                api.post(f"/api/v1/jobs/{job_id}/fail",
                         json={"worker_id": worker, "error_message": "x"}, **auth),
                api.post(f"/api/v1/workers/{worker}/ack",
                         json={"results": [{"job_id": job_id, "status": "succeeded"}]}, **auth),
            ]
            return [(await call).status_code for call in calls]

        key_on_users = await as_other(by_user, mine[0], headers=key)
        user_on_keys = await as_other(by_key, keys[0], token=token)
        untouched = [await _job(api, token, job_id) for job_id in (mine[0], keys[0])]
        owner_ack = await api.post(
            f"/api/v1/workers/{by_key}/ack", headers=key,
            json={"results": [{"job_id": keys[0], "status": "succeeded"}]},
        )
        owner_heartbeat = await api.post(f"/api/v1/workers/{by_user}/heartbeat", token=token)
    assert key_on_users == [404] * 5
    assert user_on_keys == [404] * 5
    assert [j["status"] for j in untouched] == ["processing", "processing"]
    assert (await owner_ack.get_json())["data"]["accepted"] == [keys[0]]
    assert owner_heartbeat.status_code == 200
