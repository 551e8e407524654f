"""API keys: created (the key shown once), listed (prefix only), revoked."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AwareDatetime, Field, StringConstraints, field_validator
from quart import Blueprint, Response

from reference_server.api.common import (
    RequestModel,
    accounts,
    no_content,
    ok,
    parse_body,
    principal,
    require,
    set_audit_target,
)
from reference_server.exceptions import PermissionDenied, ValidationFailed
from reference_server.security import Permission

blueprint = Blueprint("api_keys", __name__)
_KNOWN = frozenset(p.value for p in Permission)


class CreateApiKeyRequest(RequestModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    permissions: Annotated[list[Permission], Field(min_length=1, max_length=len(Permission))]
    expires_at: AwareDatetime | None = None

    @field_validator("permissions", mode="before")
    @classmethod
    def _known(cls, value: object) -> object:
        # Strict mode would refuse plain strings for the enum; accept the known strings only.
        if isinstance(value, list):
            return [Permission(v) if isinstance(v, str) and v in _KNOWN else v for v in value]
        return value


@blueprint.post("/api-keys")
@require(Permission.API_KEY_WRITE)
async def create_api_key() -> Response:
    body = await parse_body(CreateApiKeyRequest)
    who = principal()
    requested = {p.value for p in body.permissions}
    beyond = requested - who.permissions
    if beyond:
        # A key never holds more than its creator.
        raise PermissionDenied(f"cannot grant permissions you lack: {', '.join(sorted(beyond))}")
    if body.expires_at is not None and body.expires_at <= datetime.now(UTC):
        raise ValidationFailed(
            "request validation failed",
            details=[{"field": "expires_at", "message": "must be in the future"}],
        )
    key, plain = await accounts().create_api_key(
        who.organization_id,
        user_id=who.user_id,
        name=body.name,
        permissions=sorted(requested),
        expires_at=body.expires_at,
    )
    set_audit_target(key.id)
    return ok(
        {**key.to_api(), "key": plain}, 201, message="store the key now; it is not shown again"
    )


@blueprint.get("/api-keys")
@require(Permission.API_KEY_WRITE)
async def list_api_keys() -> Response:
    keys = await accounts().list_api_keys(principal().organization_id)
    return ok({"api_keys": [k.to_api() for k in keys]})


@blueprint.delete("/api-keys/<uuid:key_id>")
@require(Permission.API_KEY_WRITE)
async def revoke_api_key(key_id: uuid.UUID) -> Response:
    await accounts().revoke_api_key(principal().organization_id, key_id)
    return no_content()
