"""The worker protocol: register, heartbeat, lease (long-poll), batched ack; list workers.

A worker identity is bound to the credential that registered it (the engine checks).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import Field, StringConstraints
from quart import Blueprint, Response

from reference_server.api.common import (
    JsonInt,
    JsonObject,
    RequestModel,
    engine,
    ok,
    parse_body,
    principal,
    require,
    set_audit_target,
    state,
)
from reference_server.api.queues import QueueName
from reference_server.leases import MAX_ACK_RESULTS, Settlement
from reference_server.security import Permission

blueprint = Blueprint("workers", __name__)


class RegisterWorkerRequest(RequestModel):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    queues: Annotated[list[QueueName], Field(min_length=1, max_length=100)]
    max_concurrent_jobs: Annotated[JsonInt, Field(ge=1, le=1000)]


class LeaseRequest(RequestModel):
    max_jobs: Annotated[JsonInt, Field(ge=1, le=100)]
    lease_seconds: Annotated[JsonInt, Field(ge=1, le=86400)] | None = None
    wait_seconds: Annotated[float, Field(ge=0, le=30)] = 0


class AckSucceeded(RequestModel):
    job_id: uuid.UUID
    status: Literal["succeeded"]
    output: JsonObject = Field(default_factory=dict)

    def settlement(self) -> Settlement:
        return Settlement(job_id=self.job_id, succeeded=True, output=self.output)


class AckFailed(RequestModel):
    job_id: uuid.UUID
    status: Literal["failed"]
    error_message: Annotated[str, StringConstraints(min_length=1, max_length=10_000)] = (
        "failed (the worker gave no message)"
    )
    retryable: bool = True

    def settlement(self) -> Settlement:
        return Settlement(
            job_id=self.job_id,
            succeeded=False,
            error_message=self.error_message,
            retryable=self.retryable,
        )


AckResult = Annotated[AckSucceeded | AckFailed, Field(discriminator="status")]


class AckRequest(RequestModel):
    results: Annotated[list[AckResult], Field(min_length=1, max_length=MAX_ACK_RESULTS)]


@blueprint.post("/workers")
@require(Permission.WORKER_WRITE)
async def register_worker() -> Response:
    body = await parse_body(RegisterWorkerRequest)
    worker = await engine().register_worker(
        principal().organization_id,
        name=body.name,
        queues=list(body.queues),
        max_concurrent_jobs=body.max_concurrent_jobs,
        credential=principal().actor,
    )
    set_audit_target(worker.id)
    return ok(worker.to_api(), 201)


@blueprint.get("/workers")
@require(Permission.WORKER_READ)
async def list_workers() -> Response:
    found = await engine().list_workers(principal().organization_id)
    return ok({"workers": [w.to_api() for w in found]})


@blueprint.post("/workers/<uuid:worker_id>/heartbeat")
@require(Permission.WORKER_WRITE)
async def heartbeat(worker_id: uuid.UUID) -> Response:
    worker = await engine().heartbeat(
        principal().organization_id, worker_id, credential=principal().actor
    )
    return ok(worker.to_api())


@blueprint.post("/workers/<uuid:worker_id>/lease")
@require(Permission.WORKER_WRITE)
async def lease(worker_id: uuid.UUID) -> Response:
    body = await parse_body(LeaseRequest)
    long_polls = state().long_polls
    assert long_polls is not None
    # Waiting takes a long-poll slot (reference_server/slots.py); with none free, no wait.
    with long_polls.slot(principal().rate_key) as may_wait:
        leased = await engine().lease(
            principal().organization_id,
            worker_id,
            max_jobs=body.max_jobs,
            lease_seconds=body.lease_seconds,
            wait_seconds=body.wait_seconds if may_wait else 0,
            credential=principal().actor,
        )
    return ok({"jobs": [j.to_api() for j in leased]})


@blueprint.post("/workers/<uuid:worker_id>/ack")
@require(Permission.WORKER_WRITE)
async def ack(worker_id: uuid.UUID) -> Response:
    body = await parse_body(AckRequest)
    outcome = await engine().ack(
        principal().organization_id,
        worker_id,
        [result.settlement() for result in body.results],
        credential=principal().actor,
    )
    return ok(
        {
            "accepted": [str(job_id) for job_id in outcome.accepted],
            "rejected": [
                {"job_id": str(job_id), "code": error.code, "message": error.message}
                for job_id, error in outcome.rejected
            ],
        }
    )
