"""Queues: create, list, get, update, delete, stats, pause, resume; scoped to the caller's org."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints
from quart import Blueprint, Response

from reference_server.api.common import (
    JsonInt,
    RequestModel,
    engine,
    no_content,
    ok,
    parse_body,
    principal,
    require,
    set_audit_target,
)
from reference_server.security import Permission

blueprint = Blueprint("queues", __name__)

QueueName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,99}$")]
Priority = Annotated[JsonInt, Field(ge=0, le=9)]


class QueueSettingsRequest(RequestModel):
    max_attempts: Annotated[JsonInt, Field(ge=1, le=10)] | None = None
    timeout_seconds: Annotated[JsonInt, Field(ge=1, le=86400)] | None = None
    initial_retry_delay_seconds: Annotated[float, Field(ge=0, le=86400)] | None = None
    max_retry_delay_seconds: Annotated[float, Field(ge=0, le=86400 * 7)] | None = None
    backoff_multiplier: Annotated[float, Field(ge=1, le=100)] | None = None
    retention_days: Annotated[JsonInt, Field(ge=1, le=3650)] | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class CreateQueueRequest(RequestModel):
    name: QueueName
    description: Annotated[str, Field(max_length=1000)] | None = None
    priority: Priority = 0
    settings: QueueSettingsRequest | None = None


class UpdateQueueRequest(RequestModel):
    description: Annotated[str, Field(max_length=1000)] | None = None
    priority: Priority | None = None
    settings: QueueSettingsRequest | None = None


@blueprint.post("/queues")
@require(Permission.QUEUE_WRITE)
async def create_queue() -> Response:
    body = await parse_body(CreateQueueRequest)
    queue = await engine().create_queue(
        principal().organization_id,
        name=body.name,
        description=body.description,
        priority=body.priority,
        settings=body.settings.changes() if body.settings else None,
    )
    set_audit_target(queue.name)
    return ok(queue.to_api(), 201)


@blueprint.get("/queues")
@require(Permission.QUEUE_READ)
async def list_queues() -> Response:
    found = await engine().list_queues(principal().organization_id)
    return ok({"queues": [q.to_api() for q in found]})


@blueprint.get("/queues/<string:name>")
@require(Permission.QUEUE_READ)
async def get_queue(name: str) -> Response:
    queue = await engine().get_queue(principal().organization_id, name)
    return ok(queue.to_api())


@blueprint.put("/queues/<string:name>")
@require(Permission.QUEUE_WRITE)
async def update_queue(name: str) -> Response:
    body = await parse_body(UpdateQueueRequest)
    # Only the fields the client sent change; an explicit null description clears it.
    changes: dict[str, Any] = {}
    if "description" in body.model_fields_set:
        changes["description"] = body.description
    if body.priority is not None:
        changes["priority"] = body.priority
    if body.settings is not None:
        changes["settings"] = body.settings.changes()
    queue = await engine().update_queue(principal().organization_id, name, **changes)
    return ok(queue.to_api())


@blueprint.delete("/queues/<string:name>")
@require(Permission.QUEUE_WRITE)
async def delete_queue(name: str) -> Response:
    await engine().delete_queue(principal().organization_id, name)
    return no_content()


@blueprint.get("/queues/<string:name>/stats")
@require(Permission.QUEUE_READ)
async def queue_stats(name: str) -> Response:
    stats = await engine().queue_stats(principal().organization_id, name)
    return ok(stats)


@blueprint.post("/queues/<string:name>/pause")
@require(Permission.QUEUE_WRITE)
async def pause_queue(name: str) -> Response:
    queue = await engine().pause_queue(principal().organization_id, name)
    return ok(queue.to_api())


@blueprint.post("/queues/<string:name>/resume")
@require(Permission.QUEUE_WRITE)
async def resume_queue(name: str) -> Response:
    queue = await engine().resume_queue(principal().organization_id, name)
    return ok(queue.to_api())
