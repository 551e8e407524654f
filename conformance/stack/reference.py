"""What the docker and embedded providers share: settings, readiness wait, the admin account."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx

from conformance.stack import launcher
from conformance.stack.base import StackConfigError, StackError, trusting

READY_TIMEOUT_SECONDS = 60.0
READY_POLL_SECONDS = 0.1
ADMIN_EMAIL = "admin@conformance.example.com"
ADMIN_ORGANIZATION = "TaskForge conformance (reference stack)"

ServerEnv = Mapping[str, "str | None"]


def generated_secrets() -> dict[str, str]:
    """Fresh JWT secrets for one run: never a placeholder, never the same twice."""
    return {
        "JWT_SECRET": secrets.token_urlsafe(48),
        "JWT_REFRESH_SECRET": secrets.token_urlsafe(48),
    }


def with_overrides(env: Mapping[str, str], server_env: ServerEnv | None) -> dict[str, str]:
    """The settings with the caller's overrides applied; an override of None removes a setting."""
    merged = dict(env)
    for name, value in (server_env or {}).items():
        if not isinstance(name, str) or not name:
            raise StackConfigError(f"server_env: {name!r} is not a variable name")
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = str(value)
    return merged


def wait_ready(
    base_url: str,
    ca_bundle: Path,
    *,
    still_running: Callable[[], str | None],
    timeout: float = READY_TIMEOUT_SECONDS,
    resolve: tuple[str, ...] = (),
) -> float:
    """Poll GET /ready over TLS (the stack's CA) until 200 (the launcher's wait); `resolve`
    routes the name to its address, as --resolve does."""
    return launcher.wait_ready(f"{base_url}/ready", verify=trusting(ca_bundle),
                               still_running=still_running, timeout=timeout,
                               poll=READY_POLL_SECONDS,
                               transport=_transport(ca_bundle, resolve) if resolve else None)


def _transport(ca_bundle: Path, resolve: tuple[str, ...]) -> httpx.BaseTransport:
    from conformance.resolve import resolve_map, transport

    return transport(resolve_map(resolve), verify=trusting(ca_bundle))


def register_admin(base_url: str, ca_bundle: Path,
                   resolve: tuple[str, ...] = ()) -> tuple[str, str]:
    """Register the stack's admin account through the API; return (email, password)."""
    password = secrets.token_urlsafe(18)
    body = {"email": ADMIN_EMAIL, "password": password, "organization_name": ADMIN_ORGANIZATION}
    with httpx.Client(transport=_transport(ca_bundle, resolve),
                      timeout=httpx.Timeout(10.0)) as client:
        response = client.post(f"{base_url}/api/v1/auth/register", json=body)
    if response.status_code != 201:
        raise StackError(
            f"registering the admin account answered {response.status_code}: "
            f"{response.text[:200]}"
        )
    return ADMIN_EMAIL, password
