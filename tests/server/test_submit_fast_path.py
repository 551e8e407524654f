"""POST /api/v1/jobs answers alike through the fast path and through Quart.

Each case runs twice on fresh databases, once with the fast path and once without, and the
answers are compared: status, envelope, headers, and the audit rows left behind. The fast path's
own counter shows which requests it answered, so a case cannot pass by both going through Quart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
import redis.asyncio
from api_support import Api, register, running_app

from reference_server.fastpath import SubmitFastPath

#: Headers whose values differ between two runs by nature (times, generated ids, remaining budget).
VOLATILE = {"x-request-id", "date", "x-ratelimit-reset", "content-length"}
JOB = {"queue_name": "parity", "job_type": "email.send", "payload": {"to": "a@example.test"}}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    audit: list[tuple[str, str, int]]
    fast: int  # requests the fast path answered itself


Case = Callable[[Api, dict[str, str]], Awaitable[Any]]


@contextlib.asynccontextmanager
async def _app(
    database_url: str, redis_url: str, fast: bool, **settings: Any
) -> AsyncIterator[tuple[Api, dict[str, str]]]:
    async with running_app(database_url, redis_url, fast_path=fast, **settings) as api:
        account = await register(api)
        created = await api.post(
            "/api/v1/queues", json={"name": "parity"}, token=account["access_token"]
        )
        assert created.status_code == 201
        yield api, account


async def _answer(api: Api, database_url: str, response: Any) -> Answer:
    body = await response.get_json()
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT action, coalesce(target, ''), status_code FROM audit_log "
            "WHERE action LIKE 'POST /api/v1/jobs%' ORDER BY id"
        )
    finally:
        await conn.close()
    fast = api.app.asgi_app.app  # inside RequestSlots
    return Answer(
        status=response.status_code,
        headers={k.lower(): v for k, v in response.headers.items()},
        body=body,
        audit=[(r[0], r[1], r[2]) for r in rows],
        fast=fast.answered if isinstance(fast, SubmitFastPath) else 0,
    )


def _shape(answer: Answer) -> dict[str, Any]:
    """What must be equal both ways: everything but generated ids and times."""
    body = dict(answer.body)
    body.pop("timestamp", None)
    body.pop("request_id", None)
    data = body.get("data")
    if isinstance(data, dict):
        body["data"] = {
            k: v
            for k, v in data.items()
            if k not in {"id", "created_at", "updated_at", "scheduled_for"}
        }
    headers = {k: v for k, v in answer.headers.items() if k not in VOLATILE}
    audit = [
        (action, "<id>" if _is_uuid(target) else target, status)
        for action, target, status in answer.audit
    ]
    return {"status": answer.status, "headers": headers, "body": body, "audit": audit}


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


async def _both(
    database_url: str, redis_url: str, case: Case, *, fast_expected: int, **settings: Any
) -> tuple[Answer, Answer]:
    answers = []
    for fast in (True, False):
        async with _app(database_url, redis_url, fast, **settings) as (api, account):
            response = await case(api, account)
            answers.append(await _answer(api, database_url, response))
        # A fresh database for the other way: the audit rows compare one request's trace.
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "TRUNCATE audit_log, jobs, queues, api_keys, users, organizations CASCADE"
            )
        finally:
            await conn.close()
        client = redis.asyncio.Redis.from_url(redis_url)
        await client.flushdb()
        await client.aclose()
    with_fast, without = answers
    assert _shape(with_fast) == _shape(without)
    assert with_fast.fast == fast_expected
    assert without.fast == 0
    return with_fast, without


async def test_a_submit_is_answered_by_the_fast_path_as_quart_answers_it(
    database_url: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async def case(api: Api, account: dict[str, str]) -> Any:
        return await api.post(
            "/api/v1/jobs",
            json=JOB,
            token=account["access_token"],
            headers={"Origin": "https://app.example.test", "X-Request-ID": "parity-1"},
        )

    with_fast, _ = await _both(database_url, redis_url, case, fast_expected=1)
    # Both ways leave the same request line (same fields; values differ only in ids and times).
    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    submits = [
        ln for ln in lines if ln.get("message") == "request" and ln.get("path") == "/api/v1/jobs"
    ]
    assert len(submits) == 2
    assert sorted(submits[0]) == sorted(submits[1])
    assert {ln["request_id"] for ln in submits} == {"parity-1"}
    assert with_fast.status == 201
    assert with_fast.headers["x-request-id"] == "parity-1"
    assert with_fast.headers["access-control-allow-origin"] == "https://app.example.test"
    assert with_fast.body["data"]["status"] == "pending"
    assert with_fast.body["request_id"] == "parity-1"
    assert with_fast.audit == [("POST /api/v1/jobs", with_fast.body["data"]["id"], 201)]


async def test_an_idempotent_repeat_answers_200_with_the_same_job(
    database_url: str, redis_url: str
) -> None:
    async def case(api: Api, account: dict[str, str]) -> Any:
        body = {**JOB, "idempotency_key": "parity-key"}
        first = await api.post("/api/v1/jobs", json=body, token=account["access_token"])
        again = await api.post("/api/v1/jobs", json=body, token=account["access_token"])
        assert (await first.get_json())["data"]["id"] == (await again.get_json())["data"]["id"]
        return again

    with_fast, _ = await _both(database_url, redis_url, case, fast_expected=2)
    assert with_fast.status == 200
    assert [status for _, _, status in with_fast.audit] == [201, 200]


async def test_an_unknown_queue_is_refused_alike_and_audited(
    database_url: str, redis_url: str
) -> None:
    async def case(api: Api, account: dict[str, str]) -> Any:
        return await api.post(
            "/api/v1/jobs", json={**JOB, "queue_name": "nowhere"}, token=account["access_token"]
        )

    with_fast, _ = await _both(database_url, redis_url, case, fast_expected=1)
    assert with_fast.status == 404
    assert with_fast.body["error"]["code"] == "RESOURCE_NOT_FOUND"
    assert with_fast.audit == [("POST /api/v1/jobs", "", 404)]


async def test_a_rate_limited_submit_is_refused_alike_and_not_audited(
    database_url: str, redis_url: str
) -> None:
    async def case(api: Api, account: dict[str, str]) -> Any:
        # register + login + queue creation spent the rest of the per-IP budget
        return await api.post("/api/v1/jobs", json=JOB, token=account["access_token"])

    with_fast, _ = await _both(
        database_url, redis_url, case, fast_expected=1, RATE_LIMIT_PER_MINUTE=3
    )
    assert with_fast.status == 429
    assert with_fast.body["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert with_fast.headers["retry-after"]
    assert with_fast.headers["x-ratelimit-remaining"] == "0"
    assert with_fast.audit == []


@pytest.mark.parametrize(
    ("label", "send", "status", "code"),
    [
        ("invalid body", {"json": {**JOB, "priority": 10}}, 400, "VALIDATION_001"),
        ("unknown field", {"json": {**JOB, "extra": 1}}, 400, "VALIDATION_001"),
        (
            "not JSON",
            {"data": b"{", "headers": {"Content-Type": "application/json"}},
            400,
            "VALIDATION_001",
        ),
        (
            "text body",
            {"data": b"queue", "headers": {"Content-Type": "text/plain"}},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        ("no credentials", {"json": JOB, "token": None}, 401, "AUTH_001"),
        ("bad token", {"json": JOB, "token": "not-a-token"}, 401, "AUTH_001"),
    ],
)
async def test_refusals_before_anything_is_counted_are_quarts_own(
    database_url: str, redis_url: str, label: str, send: dict[str, Any], status: int, code: str
) -> None:
    async def case(api: Api, account: dict[str, str]) -> Any:
        kwargs = {"token": account["access_token"], **send}
        return await api.post("/api/v1/jobs", **kwargs)

    with_fast, _ = await _both(database_url, redis_url, case, fast_expected=0)
    assert (with_fast.status, with_fast.body["error"]["code"]) == (status, code), label


async def test_a_key_without_job_write_is_refused_alike(database_url: str, redis_url: str) -> None:
    async def case(api: Api, account: dict[str, str]) -> Any:
        made = await api.post(
            "/api/v1/api-keys",
            json={"name": "reader", "permissions": ["job:read"]},
            token=account["access_token"],
        )
        assert made.status_code == 201, await made.get_data()
        key = (await made.get_json())["data"]["key"]
        return await api.post("/api/v1/jobs", json=JOB, headers={"X-API-Key": key})

    with_fast, _ = await _both(database_url, redis_url, case, fast_expected=0)
    assert with_fast.status == 403
    assert with_fast.body["error"]["code"] == "PERM_001"


async def test_an_api_key_with_job_write_takes_the_fast_path(
    database_url: str, redis_url: str
) -> None:
    async def case(api: Api, account: dict[str, str]) -> Any:
        made = await api.post(
            "/api/v1/api-keys",
            json={"name": "writer", "permissions": ["job:write"]},
            token=account["access_token"],
        )
        key = (await made.get_json())["data"]["key"]
        return await api.post("/api/v1/jobs", json=JOB, headers={"X-API-Key": key})

    with_fast, _ = await _both(database_url, redis_url, case, fast_expected=1)
    assert with_fast.status == 201
    assert with_fast.audit[-1][2] == 201


@pytest.mark.parametrize("fast", [True, False])
async def test_a_job_is_committed_with_its_audit_row_or_not_at_all(
    database_url: str, redis_url: str, fast: bool
) -> None:
    async with _app(database_url, redis_url, fast) as (api, account):
        conn = await asyncpg.connect(database_url)
        try:
            # Audit rows can no longer be written: the job must not be kept without its row.
            await conn.execute(
                "ALTER TABLE audit_log ADD CONSTRAINT refuse_all CHECK (false) NOT VALID"
            )
            refused = await api.post("/api/v1/jobs", json=JOB, token=account["access_token"])
            jobs = await conn.fetchval("SELECT count(*) FROM jobs")
            await conn.execute("ALTER TABLE audit_log DROP CONSTRAINT refuse_all")
            kept = await api.post("/api/v1/jobs", json=JOB, token=account["access_token"])
            rows = await conn.fetch(
                "SELECT j.id::text = a.target AS same FROM jobs j "
                "JOIN audit_log a ON a.action = 'POST /api/v1/jobs' AND a.status_code = 201"
            )
        finally:
            await conn.close()
    assert refused.status_code >= 400
    assert jobs == 0
    assert kept.status_code == 201
    assert [r["same"] for r in rows] == [True]


async def test_a_burst_of_submits_is_limited_and_inserted_together(
    database_url: str, redis_url: str
) -> None:
    async with _app(database_url, redis_url, True, RATE_LIMIT_PER_MINUTE=10) as (api, account):
        # register, login and the queue spent 3 of the address's 10: 7 of 12 get through
        responses = await asyncio.gather(
            *(api.post("/api/v1/jobs", json=JOB, token=account["access_token"]) for _ in range(12))
        )
        conn = await asyncpg.connect(database_url)
        try:
            jobs = await conn.fetchval("SELECT count(*) FROM jobs")
            audited = await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE action = 'POST /api/v1/jobs'"
            )
        finally:
            await conn.close()
        fast = api.app.asgi_app.app  # inside RequestSlots
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 7 + [429] * 5
    assert jobs == 7
    assert audited == 7  # a 429 leaves no row
    remaining = sorted(int(r.headers["X-RateLimit-Remaining"]) for r in responses)
    assert remaining[5:] == [0, 1, 2, 3, 4, 5, 6]
    assert isinstance(fast, SubmitFastPath) and fast.answered == 12
