"""A scheduled_for outside years 1-9999 in UTC is refused on every path, and a grouped insert
settles each of its items once: stored and answered 201, or not stored and answered an error."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from api_support import error_code, register, running_app
from engine_support import make_org, spec, submit_audit

from reference_server import group_commit, job_metrics
from reference_server.engine import Engine
from reference_server.exceptions import ValidationFailed
from reference_server.group_commit import SubmitItem
from reference_server.models import Job

#: Times that are valid RFC 3339 but leave years 1-9999 once made UTC (the audit's probe first).
OUT_OF_RANGE = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"]
JOB = {"queue_name": "default", "job_type": "email.send", "payload": {}}


async def _counts(database_url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        jobs = await conn.fetchval("SELECT count(*) FROM jobs")
        ok = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action LIKE 'POST /api/v1/jobs%' "
            "AND status_code = 201"
        )
    finally:
        await conn.close()
    return int(jobs), int(ok)


@pytest.mark.parametrize("when", OUT_OF_RANGE)
@pytest.mark.parametrize("path", ["single-fast", "single-quart", "idempotent", "batch"])
async def test_an_out_of_range_scheduled_for_is_refused_before_anything_is_written(
    database_url: str, redis_url: str, path: str, when: str
) -> None:
    async with running_app(database_url, redis_url, fast_path=path == "single-fast") as api:
        account = await register(api)
        body: dict[str, Any] = {**JOB, "scheduled_for": when}
        if path == "idempotent":
            body["idempotency_key"] = "k1"
        url = "/api/v1/jobs"
        if path == "batch":
            url, body = "/api/v1/jobs/batch", {"jobs": [JOB, body]}
        response = await api.post(url, json=body, token=account["access_token"])
        listed = await api.get("/api/v1/jobs", token=account["access_token"])
    assert response.status_code == 400
    assert await error_code(response) == "VALIDATION_001"
    assert listed.status_code == 200
    assert await _counts(database_url) == (0, 0)


async def test_the_edges_of_the_range_are_accepted(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        account = await register(api)
        for when in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00"):
            made = await api.post(
                "/api/v1/jobs", json={**JOB, "scheduled_for": when}, token=account["access_token"]
            )
            assert made.status_code == 201, await made.get_data()
        listed = await api.get("/api/v1/jobs", token=account["access_token"])
    assert listed.status_code == 200
    assert (await listed.get_json())["data"]["pagination"]["total"] == 2


async def test_a_poisoned_submit_in_a_burst_of_other_organisations_leaves_one_row_per_201(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url, RATE_LIMIT_PER_MINUTE=1000) as api:
        accounts = [await register(api, org=f"Org{n}") for n in range(4)]
        bodies = [(accounts[n % 4], JOB) for n in range(39)]
        bodies.insert(17, (accounts[0], {**JOB, "scheduled_for": OUT_OF_RANGE[0]}))
        responses = await asyncio.gather(
            *(api.post("/api/v1/jobs", json=b, token=a["access_token"]) for a, b in bodies)
        )
    statuses = [r.status_code for r in responses]
    created = statuses.count(201)
    assert await _counts(database_url) == (created, created)  # one job and one 201 row per 201
    assert statuses[17] == 400
    assert created == 39


@pytest.mark.parametrize("failure", ["rendering the job", "counting the job"])
@pytest.mark.parametrize("keyed", [False, True], ids=["grouped", "idempotent"])
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "quart"])
async def test_a_failure_after_the_commit_is_answered_as_what_was_stored(
    database_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    fast: bool,
    keyed: bool,
    failure: str,
) -> None:
    """The job and its audit row (201) are committed, then building the answer fails: the
    answer must still say 201 with the job's id (a 500 over a stored job invites a retry that
    stores it twice), and the audit row must agree with it."""

    def broken(*_args: Any) -> Any:
        raise RuntimeError("injected after the commit")

    async with running_app(database_url, redis_url, fast_path=fast) as api:
        account = await register(api)
        body: dict[str, Any] = dict(JOB)
        if keyed:
            body["idempotency_key"] = "after-commit"
        if failure == "rendering the job":
            monkeypatch.setattr(Job, "to_api", broken)
        else:
            monkeypatch.setattr(job_metrics, "submitted", broken)
        response = await api.post(
            "/api/v1/jobs",
            json=body,
            token=account["access_token"],
            headers={"X-Request-ID": "after-commit-1"},
        )
        monkeypatch.undo()
    conn = await asyncpg.connect(database_url)
    try:
        jobs = [str(r["id"]) for r in await conn.fetch("SELECT id FROM jobs")]
        audited = [
            (r["target"], r["status_code"])
            for r in await conn.fetch(
                "SELECT target, status_code FROM audit_log WHERE request_id = 'after-commit-1'"
            )
        ]
    finally:
        await conn.close()
    assert response.status_code == 201, await response.get_data()
    answered = await response.get_json()
    assert answered["success"] is True and answered["request_id"] == "after-commit-1"
    assert len(jobs) == 1
    assert answered["data"]["id"] == jobs[0]
    assert audited == [(jobs[0], 201)]


async def test_the_group_commit_refuses_an_out_of_range_item_alone(pool: asyncpg.Pool) -> None:
    """The engine does not trust its caller's validation: the other items are stored once."""
    orgs = [await make_org(pool, f"org{n}") for n in range(3)]
    poisoned = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    items = [
        SubmitItem(orgs[n % 3], spec(payload={"n": n}), submit_audit(orgs[n % 3], n))
        for n in range(9)
    ]
    items[4] = SubmitItem(orgs[1], spec(scheduled_for=poisoned), submit_audit(orgs[1], 4))
    outcomes = await Engine(pool, builtin_workers=0).submit_each(items)

    assert isinstance(outcomes[4], ValidationFailed)
    assert sum(isinstance(o, Job) for o in outcomes) == 8
    assert await pool.fetchval("SELECT count(*) FROM jobs") == 8
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE status_code = 201") == 8


async def test_a_grouped_insert_that_fails_after_its_statement_is_never_run_again(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading the returned rows fails (as decoding a year-0 time did): nothing may stay stored
    for an item answered with an error, and no item may be stored twice."""
    orgs = [await make_org(pool, f"org{n}") for n in range(2)]
    real = Job.from_row
    calls = 0

    def flaky(row: Any) -> Job:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OverflowError("date value out of range")
        return real(row)

    monkeypatch.setattr(group_commit.Job, "from_row", staticmethod(flaky))
    items = [
        SubmitItem(orgs[n % 2], spec(payload={"n": n}), submit_audit(orgs[n % 2], n))
        for n in range(6)
    ]
    outcomes = await group_commit.insert_submits(pool, items)

    made = [o for o in outcomes if isinstance(o, Job)]
    assert len(outcomes) == 6
    rows = await pool.fetch("SELECT id FROM jobs ORDER BY id")
    assert sorted(j.id for j in made) == [r["id"] for r in rows]
    audited = await pool.fetchval("SELECT count(*) FROM audit_log WHERE status_code = 201")
    assert audited == len(made)
