"""Credentials for fuzzing: a fresh organisation on the reference stack, or what the user gave."""

from __future__ import annotations

import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

import httpx

#: Bound on each setup request; the target has already answered /health by then.
SETUP_TIMEOUT_SECONDS = 30.0


class SetupError(Exception):
    """Fuzzing cannot start: the target refused the setup requests."""


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthHeader:
    """The one header every fuzzing request carries; `value` is a secret."""

    name: str
    value: str

    @classmethod
    def bearer(cls, token: str) -> AuthHeader:
        return cls(name="Authorization", value=f"Bearer {token}")

    @classmethod
    def api_key(cls, key: str) -> AuthHeader:
        return cls(name="X-API-Key", value=key)


def verify_option(ca_bundle: Path | None, insecure: bool) -> bool | ssl.SSLContext:
    """httpx's `verify`: the throwaway CA of the reference stack, none, or the system store."""
    if insecure:
        return False
    return ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle is not None else True


def register_and_login(base_url: str, *, verify: bool | ssl.SSLContext) -> AuthHeader:
    """Register a throwaway organisation through the API and log its admin in.

    A fresh organisation keeps the fuzzer's data apart from anything else on the stack.
    """
    email = f"fuzz-{secrets.token_hex(6)}@example.com"
    password = secrets.token_urlsafe(18)
    with httpx.Client(base_url=base_url, verify=verify, timeout=SETUP_TIMEOUT_SECONDS) as client:
        registered = client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": password, "organization_name": "conformance fuzz"},
        )
        if registered.status_code != 201:
            raise SetupError(f"registration answered HTTP {registered.status_code}, expected 201")
        login = client.post("/api/v1/auth/login", json={"email": email, "password": password})
        if login.status_code != 200:
            raise SetupError(f"login answered HTTP {login.status_code}, expected 200")
        try:
            token = login.json()["data"]["access_token"]
        except (ValueError, KeyError, TypeError):
            raise SetupError("login answered without data.access_token") from None
    if not isinstance(token, str) or not token:
        raise SetupError("login answered an empty access token")
    return AuthHeader.bearer(token)
