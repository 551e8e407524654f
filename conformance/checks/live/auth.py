"""The authentication battery: forged, expired and misused tokens must all be refused with 401.

Also: the access token must not verify against a well-known or weak JWT secret.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import jwt

from conformance.checks.live.common import Report, target_env
from conformance.checks.live.http import (
    LiveClient,
    LoginError,
    auth_headers,
    client_for,
    error_code_of,
    login,
    login_credentials,
)
from conformance.checks.registry import check

if TYPE_CHECKING:
    from conformance.checks.registry import CheckContext
    from conformance.model import Evidence, Finding

PROTECTED_PATH = "/api/v1/auth/validate"
AUTH_ITEMS = (
    "LIVE-AUTH-NO-TOKEN", "LIVE-AUTH-GARBAGE", "LIVE-AUTH-ALG-NONE", "LIVE-AUTH-WRONG-KEY",
    "LIVE-AUTH-EXPIRED", "LIVE-AUTH-REFRESH-AS-ACCESS",
)
MIN_SECRET_BYTES = 32
MIN_DISTINCT_CHARS = 10
#: Secrets seen in examples, tutorials and the guide itself: a token signed with one is forgeable.
KNOWN_WEAK_SECRETS = (
    "your_super_secret_jwt_key_here_must_be_at_least_32_chars_long",
    "your_refresh_secret_key_at_least_32_chars",
    "your-256-bit-secret", "secret", "secretkey", "secret_key", "supersecret", "changeme",
    "change-me", "password", "jwt_secret", "jwt-secret", "jwtsecret", "taskforge", "development",
    "test", "testing", "key", "default", "12345678", "123456", "qwerty", "admin", "",
)
PLACEHOLDER = re.compile(r"^your[_-]|changeme|change[_-]me|^password\d*$|^secret\d*$", re.I)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(claims: dict[str, Any]) -> str:
    """A token with `alg: none` and an empty signature, built by hand as an attacker would."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def template_claims(access_token: str | None) -> dict[str, Any]:
    """The real token's claims when it is a JWT (so forgeries look genuine), else plausible ones."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": str(uuid.uuid4()), "org": str(uuid.uuid4()),
        "perms": ["job:read", "job:write", "queue:read"], "typ": "access",
    }
    if access_token and access_token.count(".") == 2:
        with contextlib.suppress(jwt.PyJWTError):
            claims = dict(jwt.decode(access_token, options={"verify_signature": False}))
    claims.update(iat=now, exp=now + 3600, jti=str(uuid.uuid4()))
    return claims


def _probe(client: LiveClient, token: str | None) -> tuple[int, str | None, Evidence]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = client.get(PROTECTED_PATH, headers=headers)
    return response.status_code, error_code_of(response), client.evidence(response)


@check(*AUTH_ITEMS, needs=("target",))
def auth_battery(ctx: CheckContext) -> Iterator[Finding]:
    """No, garbage, alg-none, wrong-key, expired and refresh tokens all get 401 on an API call."""
    report = Report(f"{__name__}.auth_battery")
    env = target_env(ctx)
    with client_for(ctx) as client:
        try:
            headers = auth_headers(ctx, client)
            tokens = login(ctx, client) if login_credentials(ctx) else None
        except LoginError as exc:
            for item in AUTH_ITEMS:
                yield report.error(item, str(exc), exc.evidence)
            return
        real = (headers or {}).get("Authorization", "").removeprefix("Bearer ") or None
        control = ""
        if headers:
            # The positive control: the same call with a good credential must succeed, or a 401
            # below would prove nothing.
            response = client.get(PROTECTED_PATH, headers=headers)
            if response.status_code != 200:
                for item in AUTH_ITEMS:
                    yield report.error(
                        item, f"{PROTECTED_PATH} refused the run's own credential "
                        f"({response.status_code}); the battery cannot be judged",
                        client.evidence(response),
                    )
                return
            control = f" (a valid credential gets 200 on {PROTECTED_PATH})"
        claims = template_claims(real)
        random_key = secrets.token_bytes(32)
        expired = dict(claims, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
        cases: list[tuple[str, str, str | None]] = [
            ("LIVE-AUTH-NO-TOKEN", "no token", None),
            ("LIVE-AUTH-GARBAGE", "a garbage token", "not-a-token." + secrets.token_urlsafe(24)),
            ("LIVE-AUTH-ALG-NONE", "an alg=none token", unsigned_token(claims)),
            ("LIVE-AUTH-WRONG-KEY", "a token signed with another key",
             jwt.encode(claims, random_key, algorithm="HS256")),
        ]
        secret = env.get("JWT_SECRET")
        if secret:
            expired_token = jwt.encode(expired, secret, algorithm="HS256")
            expired_what = "an expired token signed with the server's JWT_SECRET"
        else:
            expired_token = jwt.encode(expired, random_key, algorithm="HS256")
            expired_what = "an expired token (signed with a random key: the real key is unknown)"
        cases.append(("LIVE-AUTH-EXPIRED", expired_what, expired_token))
        if tokens is not None and tokens.refresh_token:
            cases.append(
                ("LIVE-AUTH-REFRESH-AS-ACCESS", "the refresh token as a bearer token",
                 tokens.refresh_token)
            )
        else:
            yield report.not_applicable(
                "LIVE-AUTH-REFRESH-AS-ACCESS", "no login credentials: no refresh token to misuse"
            )
        for item, what, token in cases:
            status, code, evidence = _probe(client, token)
            if status == 401:
                yield report.passed(item, f"{what}: 401 {code or ''}{control}".strip(), evidence)
            else:
                yield report.failed(
                    item, f"{what} was answered {status}", evidence,
                    expected="401", actual=f"{status} {code or ''}".strip(),
                )


def secret_problem(name: str, value: str) -> str | None:
    if is_known_weak(value):
        return f"{name} is a well-known example value"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"{name} is {len(value.encode())} bytes, under {MIN_SECRET_BYTES}"
    if len(set(value)) < MIN_DISTINCT_CHARS:
        return f"{name} has only {len(set(value))} distinct characters"
    return None


def is_known_weak(value: str) -> bool:
    return value in KNOWN_WEAK_SECRETS or bool(PLACEHOLDER.search(value))


def verifies_with(token: str, key: str) -> bool:
    with warnings.catch_warnings():
        # PyJWT warns about short HMAC keys; trying short keys is the point here.
        warnings.simplefilter("ignore")
        try:
            jwt.decode(
                token, key, algorithms=["HS256", "HS384", "HS512"],
                options={"verify_exp": False, "verify_aud": False, "verify_iat": False,
                         "verify_nbf": False},
            )
        except jwt.PyJWTError:
            return False
    return True


@check("LIVE-JWT-SECRET", needs=("target",))
def jwt_secret(ctx: CheckContext) -> Iterator[Finding]:
    """Issued tokens do not verify with well-known secrets; the configured secrets are strong."""
    report = Report(f"{__name__}.jwt_secret")
    env = target_env(ctx)
    problems: list[str] = []
    evidence: list[Evidence] = []
    judged: list[str] = []
    with client_for(ctx) as client:
        try:
            tokens = login(ctx, client) if login_credentials(ctx) else None
        except LoginError as exc:
            yield report.error("LIVE-JWT-SECRET", str(exc), exc.evidence)
            return
    issued = [t for t in (ctx.token, tokens.access_token if tokens else None,
                          tokens.refresh_token if tokens else None) if t and t.count(".") == 2]
    for token in issued:
        cracked = next((k for k in KNOWN_WEAK_SECRETS if verifies_with(token, k)), None)
        if cracked is not None:
            problems.append(
                f"a token issued by the server verifies with the well-known secret {cracked!r}"
            )
    if issued:
        judged.append(f"{len(issued)} issued token(s) tried against "
                      f"{len(KNOWN_WEAK_SECRETS)} well-known secrets")
    for name in ("JWT_SECRET", "JWT_REFRESH_SECRET"):
        if env.get(name) is not None:
            judged.append(f"{name} of the reference stack")
            problem = secret_problem(name, env[name])
            if problem:
                problems.append(problem)
    if env.get("JWT_SECRET") and env.get("JWT_SECRET") == env.get("JWT_REFRESH_SECRET"):
        problems.append("JWT_REFRESH_SECRET equals JWT_SECRET")
    if not judged:
        yield report.not_applicable(
            "LIVE-JWT-SECRET", "no JWT issued to this run and no settings known: give --token"
        )
    elif problems:
        yield report.failed(
            "LIVE-JWT-SECRET", "; ".join(problems), *evidence,
            expected=f"random secrets of at least {MIN_SECRET_BYTES} bytes",
        )
    else:
        yield report.passed("LIVE-JWT-SECRET", "; ".join(judged) + ": no weakness found")
