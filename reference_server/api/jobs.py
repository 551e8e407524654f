"""Jobs: submit (single and batch), get, list with filters, cancel, retry; complete and fail."""

from __future__ import annotations

import math
import uuid
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from quart import Blueprint, Response, g

from reference_server.api.common import (
    JsonInt,
    JsonObject,
    RequestModel,
    engine,
    ok,
    parse_body,
    parse_query,
    principal,
    request_audit,
    require,
    set_audit_target,
    stored_job,
)
from reference_server.api.queues import QueueName
from reference_server.models import JobSpec, JobStatus, utc_in_range
from reference_server.security import Permission

blueprint = Blueprint("jobs", __name__)

MAX_BATCH = 1000
#: RFC 3339 with an offset, in years 1-9999 once in UTC: a time past that range would be stored
#: and then could not be read back (it broke every read of its organisation's jobs).
ScheduledFor = Annotated[AwareDatetime, AfterValidator(utc_in_range)]
#: 1-100 printable characters (contract): no C0 or C1 control character and no DEL. The
#: OpenAPI document states the same pattern; NUL, which PostgreSQL cannot store, is among them.
JOB_TYPE_PATTERN = r"^[^\u0000-\u001F\u007F-\u009F]+$"
JobType = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=JOB_TYPE_PATTERN)]


class SubmitJobRequest(RequestModel):
    queue_name: QueueName
    job_type: JobType
    payload: JsonObject
    priority: Annotated[JsonInt, Field(ge=0, le=9)] = 0
    max_attempts: Annotated[JsonInt, Field(ge=1, le=10)] | None = None
    scheduled_for: ScheduledFor | None = None
    timeout_seconds: Annotated[JsonInt, Field(ge=1, le=86400)] | None = None
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None

    def spec(self) -> JobSpec:
        return JobSpec(
            queue_name=self.queue_name,
            job_type=self.job_type,
            payload=self.payload,
            priority=self.priority,
            max_attempts=self.max_attempts,
            scheduled_for=self.scheduled_for,
            timeout_seconds=self.timeout_seconds,
            idempotency_key=self.idempotency_key,
        )


class SubmitBatchRequest(RequestModel):
    jobs: Annotated[list[SubmitJobRequest], Field(min_length=1, max_length=MAX_BATCH)]


class ListJobsQuery(BaseModel):
    # Unknown query parameters (cache busters, tracing) are ignored, as HTTP clients expect.
    model_config = ConfigDict(extra="ignore")

    queue_name: str | None = None
    status: JobStatus | None = None
    job_type: str | None = None
    page: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    limit: Annotated[int, Field(ge=1, le=100)] = 20


class CompleteRequest(RequestModel):
    worker_id: uuid.UUID
    # Absent means "no output"; an explicit null is not an object and is refused, as documented.
    output: JsonObject = Field(default_factory=dict)


class FailRequest(RequestModel):
    worker_id: uuid.UUID
    error_message: Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
    retryable: bool = True


@blueprint.post("/jobs")
@require(Permission.JOB_WRITE)
async def submit_job() -> Response:
    body = await parse_body(SubmitJobRequest)
    job, created = await engine().submit(
        principal().organization_id, body.spec(), audit=request_audit()
    )
    g.audit_written = True  # committed with the job: from here on the answer says so
    return stored_job(job, 201 if created else 200)


@blueprint.post("/jobs/batch")
@require(Permission.JOB_WRITE)
async def submit_batch() -> Response:
    body = await parse_body(SubmitBatchRequest)
    # The validated items go to the engine as they are (they have JobSpec's fields): a JobSpec
    # copy of each cost about as much as validating the body.
    ids = await engine().submit_batch(principal().organization_id, body.jobs)
    set_audit_target(f"{len(ids)} jobs")
    return ok({"ids": [str(i) for i in ids]}, 201)


@blueprint.get("/jobs")
@require(Permission.JOB_READ)
async def list_jobs() -> Response:
    query = parse_query(ListJobsQuery)
    found, total = await engine().list_jobs(
        principal().organization_id,
        queue_name=query.queue_name,
        status=query.status,
        job_type=query.job_type,
        page=query.page,
        limit=query.limit,
    )
    return ok(
        {
            "jobs": [j.to_api() for j in found],
            "pagination": {
                "page": query.page,
                "limit": query.limit,
                "total": total,
                "pages": math.ceil(total / query.limit) if total else 0,
            },
        }
    )


@blueprint.get("/jobs/<uuid:job_id>")
@require(Permission.JOB_READ)
async def get_job(job_id: uuid.UUID) -> Response:
    job = await engine().get_job(principal().organization_id, job_id)
    return ok(job.to_api())


@blueprint.post("/jobs/<uuid:job_id>/cancel")
@require(Permission.JOB_WRITE)
async def cancel_job(job_id: uuid.UUID) -> Response:
    job = await engine().cancel_job(principal().organization_id, job_id)
    return ok(job.to_api())


@blueprint.post("/jobs/<uuid:job_id>/retry")
@require(Permission.JOB_WRITE)
async def retry_job(job_id: uuid.UUID) -> Response:
    job = await engine().retry_job(principal().organization_id, job_id)
    return ok(job.to_api())


@blueprint.post("/jobs/<uuid:job_id>/complete")
@require(Permission.WORKER_WRITE)
async def complete_job(job_id: uuid.UUID) -> Response:
    body = await parse_body(CompleteRequest)
    output = body.output if "output" in body.model_fields_set else None
    job = await engine().complete_job(
        principal().organization_id,
        job_id,
        worker_id=body.worker_id,
        output=output,
        credential=principal().actor,
    )
    return ok(job.to_api())


@blueprint.post("/jobs/<uuid:job_id>/fail")
@require(Permission.WORKER_WRITE)
async def fail_job(job_id: uuid.UUID) -> Response:
    body = await parse_body(FailRequest)
    job = await engine().fail_job(
        principal().organization_id,
        job_id,
        worker_id=body.worker_id,
        error_message=body.error_message,
        retryable=body.retryable,
        credential=principal().actor,
    )
    return ok(job.to_api())
