"""Helpers of the engine tests: pools on the per-test database, organisations, bounded waits."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import asyncpg

from reference_server.audit import AuditEntry
from reference_server.engine import Engine
from reference_server.models import Job, JobSpec, JobStatus

if TYPE_CHECKING:
    from uuid import UUID

#: Upper bound of every wait in these tests; reaching it fails the test, it never passes one.
WAIT_LIMIT_SECONDS = 20.0


async def open_pool(database_url: str) -> asyncpg.Pool:
    return await asyncpg.create_pool(database_url, min_size=1, max_size=8)


async def make_org(pool: asyncpg.Pool, name: str = "acme", *, default_queue: bool = True) -> UUID:
    """An organisation row (as registration creates it), with its `default` queue."""
    org_id: UUID = await pool.fetchval(
        "INSERT INTO organizations (name) VALUES ($1) RETURNING id", name
    )
    if default_queue:
        await Engine(pool, builtin_workers=0).create_default_queue(org_id)
    return org_id


def spec(job_type: str = "external_job", queue: str = "default", **fields: Any) -> JobSpec:
    return JobSpec(queue_name=queue, job_type=job_type, **fields)


def submit_audit(org_id: UUID, n: int) -> AuditEntry:
    """The audit row a POST /api/v1/jobs hands the group commit for item `n` (request id rN)."""
    return AuditEntry(
        actor="user:a",
        organization_id=org_id,
        action="POST /api/v1/jobs",
        target=None,
        source_ip="192.0.2.1",
        request_id=f"r{n}",
        status_code=0,
    )


async def wait_for_status(
    engine: Engine, org_id: UUID, job_id: UUID, *statuses: JobStatus
) -> Job:
    """Poll (bounded) until the job is in one of `statuses`; fail with its last state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_LIMIT_SECONDS
    job = await engine.get_job(org_id, job_id)
    while job.status not in statuses:
        if loop.time() > deadline:
            detail = f"{job.status} ({job.error_message})"
            raise AssertionError(f"job stayed {detail}; wanted {statuses}")
        await asyncio.sleep(0.05)
        job = await engine.get_job(org_id, job_id)
    return job


async def db_now(pool: asyncpg.Pool) -> Any:
    return await pool.fetchval("SELECT now()")
