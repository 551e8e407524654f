"""The worker protocol: register, heartbeat, lease (long-poll); list workers."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field
from quart import Blueprint, Response

from reference_server.api.common import (
    JsonInt,
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


@blueprint.post("/workers")
@require(Permission.WORKER_WRITE)
async def register_worker() -> Response:
    body = await parse_body(RegisterWorkerRequest)
    worker = await engine().register_worker(
        principal().organization_id,
        name=body.name,
        queues=list(body.queues),
        max_concurrent_jobs=body.max_concurrent_jobs,
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
    worker = await engine().heartbeat(principal().organization_id, worker_id)
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
        )
    return ok({"jobs": [j.to_api() for j in leased]})
