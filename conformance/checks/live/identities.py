"""A second identity, in another organisation, and a member, for the tenant-isolation checks.

Where it comes from, in order: --second-token, --second-api-key, --second-email/--second-password,
else (on the reference stack, or with --allow-writes where registration is open) a throwaway
organisation the kit registers itself. Cached per target and run: checks share one. Whatever its
source, it is confirmed as the run's own credential is (a protected endpoint of the contract that
answers it 200, `auth.find_control`): a credential that does not work would make every refusal
of B's look like isolation.

A member of the run's organisation comes from --member-token or --member-api-key; without one
the tenancy check makes a member as an API key.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conformance.checks.live.auth import find_control
from conformance.checks.live.common import may_write, run_id, run_input
from conformance.checks.live.http import LiveClient, payload_of

if TYPE_CHECKING:
    from conformance.checks.registry import CheckContext
    from conformance.model import Evidence

HOW_TO_GIVE_ONE = (
    "give --second-token, --second-api-key or --second-email/--second-password (an account in "
    "another organisation), or --allow-writes where registration is open"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Identity:
    headers: dict[str, str]
    how: str  # for messages: where the identity came from


class IdentityError(RuntimeError):
    """The second identity was given or registered, and the target refused it."""

    def __init__(self, message: str, evidence: Evidence | None = None) -> None:
        super().__init__(message)
        self.evidence = evidence


class RegistrationClosed(IdentityError):
    """The kit may register a second organisation, and the target does not let it: unjudgeable."""


HOW_TO_GIVE_ONE_CLOSED = (
    "give --second-token, --second-api-key or --second-email/--second-password (an account in "
    "another organisation) to make these judgeable"
)

_CACHE: dict[tuple[str, str], Identity] = {}
_LOCK = threading.Lock()


def second_identity(ctx: CheckContext, client: LiveClient) -> Identity | None:
    """The second identity, or None when none is given and the kit may not register one.

    Raises IdentityError when one was given (or registered) and the target refused it.
    """
    token, api_key = run_input(ctx, "second_token"), run_input(ctx, "second_api_key")
    email, password = run_input(ctx, "second_email"), run_input(ctx, "second_password")
    given = (f"token:{token}" if token else f"key:{api_key}" if api_key
             else str(email or f"registered:{run_id(ctx)}"))
    key = (client.target.base_url, given)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        if token:
            identity = Identity(headers={"Authorization": f"Bearer {token}"}, how="--second-token")
        elif api_key:
            identity = Identity(headers={"X-API-Key": str(api_key)}, how="--second-api-key")
        elif email and password:
            identity = _login(client, str(email), str(password), "--second-email")
        elif may_write(ctx):
            identity = _register(ctx, client)
        else:
            return None
        _confirm(client, identity)
        _CACHE[key] = identity
        return identity


def _confirm(client: LiveClient, identity: Identity) -> None:
    """Raises IdentityError unless a protected endpoint answers the identity 200."""
    path, tried = find_control(client, identity.headers)
    if path is None:
        raise IdentityError(
            f"the second identity ({identity.how}) was not accepted by any protected endpoint, "
            f"so its refusals would prove nothing: tried {'; '.join(tried)}. Give a working "
            "credential of another organisation (an expired or revoked one?)")


def member_identity(ctx: CheckContext) -> Identity | None:
    """A member of the run's organisation, when one is given (--member-token, --member-api-key)."""
    token, api_key = run_input(ctx, "member_token"), run_input(ctx, "member_api_key")
    if token:
        return Identity(headers={"Authorization": f"Bearer {token}"}, how="--member-token")
    if api_key:
        return Identity(headers={"X-API-Key": str(api_key)}, how="--member-api-key")
    return None


def _login(client: LiveClient, email: str, password: str, how: str) -> Identity:
    response = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    data = payload_of(response)
    if response.status_code != 200 or not isinstance(data, dict) or not data.get("access_token"):
        raise IdentityError(
            f"the second identity ({how}) could not log in: HTTP {response.status_code}",
            client.evidence(response, "login as the second identity"),
        )
    return Identity(headers={"Authorization": f"Bearer {data['access_token']}"}, how=how)


def _register(ctx: CheckContext, client: LiveClient) -> Identity:
    tag = secrets.token_hex(4)
    # Short parts: contracts may bound them (the reference allows 20 characters a label).
    email = f"second-{tag}@conformance.example.com"
    password = secrets.token_urlsafe(18)
    response = client.post("/api/v1/auth/register", json={
        "email": email, "password": password,
        "organization_name": f"conformance second organisation {run_id(ctx)} {tag}",
    })
    if response.status_code in (403, 404, 405):
        # Registration closed is a normal production choice, not a broken check.
        raise RegistrationClosed(
            f"registration of a throwaway second organisation is closed "
            f"(HTTP {response.status_code}): {HOW_TO_GIVE_ONE_CLOSED}",
            client.evidence(response, "register a second organisation"),
        )
    if response.status_code not in (200, 201):
        raise IdentityError(
            f"registering a throwaway second organisation was refused "
            f"(HTTP {response.status_code}): {HOW_TO_GIVE_ONE}",
            client.evidence(response, "register a second organisation"),
        )
    return _login(client, email, password, "a throwaway organisation the kit registered")


def organisation_of(client: LiveClient, headers: dict[str, str]) -> str | None:
    """The organisation id GET /auth/validate reports for the credential, when it does."""
    response = client.get("/api/v1/auth/validate", headers=headers)
    data = payload_of(response)
    if response.status_code == 200 and isinstance(data, dict) and data.get("organization_id"):
        return str(data["organization_id"])
    return None
