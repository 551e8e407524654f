"""Auth endpoints: register, login (throttled per email), refresh (rotating), logout, validate."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field, StringConstraints
from quart import Blueprint, Response, g

from reference_server.api.common import (
    RequestModel,
    accounts,
    engine,
    no_content,
    ok,
    parse_body,
    principal,
    rate_limit,
    require,
    set_audit_target,
    state,
)
from reference_server.exceptions import AuthenticationFailed, PermissionDenied
from reference_server.security import TokenType, hash_password, verify_password

blueprint = Blueprint("auth", __name__)

#: The OpenAPI document's pattern, exactly: a plain ASCII address (no control characters).
EMAIL_PATTERN = (
    r"^[A-Za-z0-9_%+-]{1,20}(?:\.[A-Za-z0-9_%+-]{1,20}){0,2}"
    r"@(?:[A-Za-z0-9]{1,20}(?:-[A-Za-z0-9]{1,20}){0,2}\.){1,4}[A-Za-z]{2,20}$"
)
Email = Annotated[str, StringConstraints(min_length=3, max_length=254, pattern=EMAIL_PATTERN)]
#: argon2 cost grows with the input: an upper bound keeps a login from being a CPU lever.
Password = Annotated[str, Field(min_length=8, max_length=1024)]


class RegisterRequest(RequestModel):
    email: Email
    password: Password
    organization_name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class LoginRequest(RequestModel):
    email: Email
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class RefreshRequest(RequestModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=4096)]


@blueprint.post("/auth/register")
async def register() -> Response:
    await rate_limit(None)
    body = await parse_body(RegisterRequest)
    password_hash = await hash_password(body.password)
    user = await accounts().register(
        email=body.email,
        password_hash=password_hash,
        organization_name=body.organization_name,
        engine=engine(),
    )
    g.audit_actor = f"user:{user.id}"
    g.audit_org = user.organization_id
    set_audit_target(user.organization_id)
    return ok({"user_id": str(user.id), "organization_id": str(user.organization_id)}, 201)


@blueprint.post("/auth/login")
async def login() -> Response:
    await rate_limit(None)
    body = await parse_body(LoginRequest)
    st = state()
    assert st.login_throttle is not None
    # Counted before the password is checked: a burst cannot outrun the count.
    counted = await st.login_throttle.take(body.email)
    user = await accounts().user_by_email(body.email)
    valid = await verify_password(user.password_hash if user else None, body.password)
    if user is None or not valid:
        raise AuthenticationFailed("invalid email or password")
    if counted:
        await st.login_throttle.give_back(body.email)
    g.audit_actor = f"user:{user.id}"
    g.audit_org = user.organization_id
    pair = st.tokens.issue_pair(user.id, user.organization_id, user.permissions)
    return ok(pair.to_api())


@blueprint.post("/auth/refresh")
async def refresh() -> Response:
    await rate_limit(None)
    body = await parse_body(RefreshRequest)
    st = state()
    claims = st.tokens.verify(body.refresh_token, TokenType.REFRESH)
    assert st.refresh_tokens is not None
    remaining = int((claims.expires_at - datetime.now(UTC)).total_seconds()) + 60
    if await st.refresh_tokens.family_revoked(claims.family):
        raise AuthenticationFailed("refresh token revoked")
    if not await st.refresh_tokens.consume(claims.jti, remaining):
        # Reuse of a rotated token: revoke every token issued from this login since. The family
        # outlives any of its tokens by at most one refresh lifetime.
        lifetime = st.settings.JWT_REFRESH_EXPIRY_TIME_MINUTES * 60 + 60
        await st.refresh_tokens.revoke_family(claims.family, lifetime)
        raise AuthenticationFailed("refresh token already used or revoked")
    # Permissions come from the user's current role, not from the old token.
    user = await accounts().get_user(claims.organization_id, claims.user_id)
    if user is None:
        raise AuthenticationFailed("unknown user")
    g.audit_actor = f"user:{user.id}"
    g.audit_org = user.organization_id
    pair = st.tokens.issue_pair(
        user.id, user.organization_id, user.permissions, family=claims.family
    )
    return ok(pair.to_api())


@blueprint.post("/auth/logout")
@require(None)
async def logout() -> Response:
    body = await parse_body(RefreshRequest)
    st = state()
    claims = st.tokens.verify(body.refresh_token, TokenType.REFRESH)
    if claims.user_id != principal().user_id:
        raise PermissionDenied("the refresh token belongs to another user")
    assert st.refresh_tokens is not None
    remaining = int((claims.expires_at - datetime.now(UTC)).total_seconds()) + 60
    await st.refresh_tokens.consume(claims.jti, remaining)
    g.audit_actor = f"user:{claims.user_id}"
    g.audit_org = claims.organization_id
    return no_content()


@blueprint.get("/auth/validate")
@require(None)
async def validate() -> Response:
    who = principal()
    return ok(
        {
            "valid": True,
            "user_id": str(who.user_id),
            "organization_id": str(who.organization_id),
            "permissions": sorted(who.permissions),
            "expires_at": who.expires_at.isoformat().replace("+00:00", "Z")
            if who.expires_at
            else None,
            "credential_type": who.kind,
        }
    )
