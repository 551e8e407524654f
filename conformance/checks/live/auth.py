"""The authentication battery: forged, expired and misused tokens must all be refused with 401.

Also: the access token must not verify against a well-known or weak JWT secret.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from conformance.checks.live.common import Report, known_setting, run_input, target_env
from conformance.checks.live.http import (
    LiveClient,
    LoginError,
    auth_headers,
    client_for,
    credential_or_findings,
    error_code_of,
    login,
    login_credentials,
)
from conformance.checks.registry import check

if TYPE_CHECKING:
    import httpx

    from conformance.checks.registry import CheckContext
    from conformance.model import Evidence, Finding

#: Protected endpoints of the contract, in the order the positive control tries them: the battery
#: runs on the first one that answers 200 to the run's own credential.
CONTROL_CANDIDATES = (
    "/api/v1/auth/validate", "/api/v1/jobs?limit=1", "/api/v1/queues", "/api/v1/workers",
    "/api/v1/api-keys",
)
#: Items judged with any credential; the others need a JWT the server issued (its claims).
BASIC_ITEMS = ("LIVE-AUTH-NO-TOKEN", "LIVE-AUTH-GARBAGE")
JWT_ITEMS = (
    "LIVE-AUTH-ALG-NONE", "LIVE-AUTH-SIG-STRIPPED", "LIVE-AUTH-CLAIMS-TAMPERED",
    "LIVE-AUTH-WRONG-KEY",
)
KEYED_ITEMS = ("LIVE-AUTH-EXPIRED", "LIVE-AUTH-ALG-PINNED")
AUTH_ITEMS = (*BASIC_ITEMS, *JWT_ITEMS, *KEYED_ITEMS, "LIVE-AUTH-REFRESH-AS-ACCESS")
ALL_PERMISSIONS = (
    "queue:read", "queue:write", "job:read", "job:write", "worker:read", "worker:write",
    "api_key:write",
)
HOW_TO_GET_A_JWT = "give --email/--password (or --token with an access JWT)"
HOW_TO_KNOW_THE_KEY = (
    "give --jwt-secret (or $TASKFORGE_JWT_SECRET), an --env-file with JWT_SECRET, "
    "or --expired-token"
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


def _b64_json(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def unsigned_token(claims: dict[str, Any], alg: str = "none") -> str:
    """A token with `alg: none` (in the given spelling) and an empty signature, as an attacker
    would build it by hand (PyJWT refuses to)."""
    return f"{_b64_json({'alg': alg, 'typ': 'JWT'})}.{_b64_json(claims)}."


def is_jwt(token: str | None) -> bool:
    return bool(token) and str(token).count(".") == 2


def claims_of(token: str) -> dict[str, Any] | None:
    """The claims of a JWT, unverified; None when it does not decode."""
    try:
        return dict(jwt.decode(token, options={"verify_signature": False}))
    except jwt.PyJWTError:
        return None


def expiry_of(token: str) -> int | None:
    claims = claims_of(token)
    exp = claims.get("exp") if claims else None
    return int(exp) if isinstance(exp, int | float) else None


def fresh(claims: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The claims with a new iat/exp/jti (valid for an hour), then the given changes."""
    now = int(time.time())
    return {**claims, "iat": now, "exp": now + 3600, "jti": str(uuid.uuid4()), **changes}


def resigned_payload(token: str, claims: dict[str, Any]) -> str:
    """The token's own header and signature around other claims: a tampered payload."""
    header, _, signature = token.split(".")
    return f"{header}.{_b64_json(claims)}.{signature}"


def hs_token(claims: dict[str, Any], key: str | bytes, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about short HMAC keys: not ours to judge
        return jwt.encode(claims, key, algorithm=algorithm)


@dataclass(frozen=True, kw_only=True, slots=True)
class Credentials:
    """What the battery works from: the control header, and a JWT the server issued, if any."""

    headers: dict[str, str]
    access_jwt: str | None
    refresh_token: str | None


def _credentials(ctx: CheckContext, client: LiveClient) -> Credentials | None:
    tokens = login(ctx, client) if login_credentials(ctx) else None
    access = ctx.token if is_jwt(ctx.token) else (tokens.access_token if tokens else None)
    if access is not None and not is_jwt(access):
        access = None
    if access is not None:
        headers = {"Authorization": f"Bearer {access}"}
    else:
        headers = auth_headers(ctx, client) or {}
    if not headers:
        return None
    return Credentials(
        headers=headers, access_jwt=access,
        refresh_token=tokens.refresh_token if tokens else None,
    )


def find_control(client: LiveClient, headers: dict[str, str]) -> tuple[str | None, list[str]]:
    """The first candidate answering 200 to the credential, and what each candidate answered."""
    tried: list[str] = []
    for path in CONTROL_CANDIDATES:
        response = client.get(path, headers=headers)
        if response.status_code == 200:
            return path, tried
        tried.append(f"GET {path}: {response.status_code}")
    return None, tried


def signing_key(ctx: CheckContext) -> tuple[str, str] | None:
    """(the server's JWT_SECRET, where it came from), when the run knows it."""
    given = run_input(ctx, "jwt_secret")
    if given:
        return str(given), "--jwt-secret"
    from_env = target_env(ctx).get("JWT_SECRET")
    if from_env:
        return from_env, "the reference stack's settings"
    from_file = known_setting(ctx, "JWT_SECRET")
    if from_file:
        return from_file, "--env-file"
    return None


class _Battery:
    """The probes of one run, all to the control endpoint; each answer judged on its own."""

    def __init__(self, report: Report, client: LiveClient, path: str) -> None:
        self.report = report
        self.client = client
        self.path = path

    def probe(self, token: str | None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.client.get(self.path, headers=headers)

    def judge(self, item: str, cases: list[tuple[str, str | None]]) -> Finding:
        """Passed when every case gets 401; failed on the first case answered otherwise."""
        evidence: list[Evidence] = []
        for what, token in cases:
            response = self.probe(token)
            evidence.append(self.client.evidence(response, f"{what} on GET {self.path}"))
            status = response.status_code
            if status == 429:
                return self.report.error(
                    item, f"{what}: rate limited (429) before the case could be judged",
                    *evidence,
                )
            if status != 401:
                accepted = "accepted" if status < 300 else f"answered {status}"
                return self.report.failed(
                    item, f"{what} was {accepted} on GET {self.path}", *evidence,
                    expected="401 (AUTH_001 or AUTH_002)",
                    actual=f"{status} {error_code_of(response) or ''}".strip(),
                )
        names = "; ".join(what for what, _ in cases)
        return self.report.passed(
            item, f"{names}: 401 on GET {self.path}, which answers 200 to the run's credential",
            *evidence,
        )


@check(*AUTH_ITEMS, needs=("target",))
def auth_battery(ctx: CheckContext) -> Iterator[Finding]:
    """Missing, garbage, unsigned, stripped, tampered, foreign-key, wrong-algorithm, expired and
    refresh tokens all get 401 on a protected endpoint that accepts the run's own credential."""
    report = Report(f"{__name__}.auth_battery")
    with client_for(ctx) as client:
        credentials = yield from credential_or_findings(
            report, AUTH_ITEMS, "no credential: give --token, --api-key or --email/--password "
            "(a 401 proves nothing without a credential that gets 200)",
            lambda: _credentials(ctx, client),
        )
        if credentials is None:
            return
        path, tried = find_control(client, credentials.headers)
        if path is None:
            message = (
                "no protected endpoint accepted the run's own credential, so no refusal can be "
                f"judged; tried {'; '.join(tried)}"
            )
            for item in AUTH_ITEMS:
                yield report.error(item, message)
            return
        battery = _Battery(report, client, path)
        yield battery.judge("LIVE-AUTH-NO-TOKEN", [("no token", None)])
        yield battery.judge(
            "LIVE-AUTH-GARBAGE",
            [("a garbage token", "not-a-token." + secrets.token_urlsafe(24)),
             ("a three-part token of garbage", "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl")],
        )
        yield from _jwt_cases(battery, credentials)
        yield from _keyed_cases(ctx, battery, credentials)
        if credentials.refresh_token:
            yield battery.judge(
                "LIVE-AUTH-REFRESH-AS-ACCESS",
                [("the refresh token as a bearer token", credentials.refresh_token)],
            )
        else:
            yield report.not_applicable(
                "LIVE-AUTH-REFRESH-AS-ACCESS",
                "no refresh token to misuse: give --email/--password so the kit logs in",
            )


def _jwt_cases(battery: _Battery, credentials: Credentials) -> Iterator[Finding]:
    token = credentials.access_jwt
    claims = claims_of(token) if token else None
    if token is None or claims is None:
        for item in JWT_ITEMS:
            yield battery.report.not_applicable(
                item, "the run's credential is not a JWT, and forgeries built on invented "
                f"claims prove nothing: {HOW_TO_GET_A_JWT}",
            )
        return
    header, payload, _ = token.split(".")
    yield battery.judge(
        "LIVE-AUTH-ALG-NONE",
        [(f"the run's claims with alg {alg!r} and no signature", unsigned_token(fresh(claims), alg))
         for alg in ("none", "None", "NONE")],
    )
    yield battery.judge(
        "LIVE-AUTH-SIG-STRIPPED",
        [("the run's own token with its signature removed", f"{header}.{payload}."),
         ("the run's own token without its signature part", f"{header}.{payload}")],
    )
    other_org = str(uuid.uuid4())
    yield battery.judge(
        "LIVE-AUTH-CLAIMS-TAMPERED",
        [("the run's token with another organisation under its signature",
          resigned_payload(token, {**claims, "org": other_org, "organization_id": other_org})),
         ("the run's token with every permission under its signature",
          resigned_payload(token, {**claims, "perms": list(ALL_PERMISSIONS), "role": "admin"}))],
    )
    yield battery.judge(
        "LIVE-AUTH-WRONG-KEY",
        [("the run's claims signed with another key",
          hs_token(fresh(claims), secrets.token_bytes(32)))],
    )


def _keyed_cases(
    ctx: CheckContext, battery: _Battery, credentials: Credentials
) -> Iterator[Finding]:
    """EXPIRED and ALG-PINNED: only with the server's real key (or a genuine expired token)."""
    report = battery.report
    token = credentials.access_jwt
    claims = claims_of(token) if token else None
    key = signing_key(ctx)
    key_works = False
    key_evidence: Evidence | None = None
    if key is not None and claims is not None:
        # The key's own positive control: a fresh token signed with it must get 200, or a 401
        # to its expired twin would be the wrong-key case again.
        response = battery.probe(hs_token(fresh(claims), key[0]))
        key_works = response.status_code == 200
        key_evidence = battery.client.evidence(
            response, f"a fresh token signed with the JWT secret from {key[1]}"
        )
    given_expired = run_input(ctx, "expired_token")
    if given_expired:
        yield _given_expired(battery, str(given_expired), key if key_works else None)
    elif key is not None and claims is not None and key_works:
        past = int(time.time())
        yield battery.judge(
            "LIVE-AUTH-EXPIRED",
            [("the run's claims, expired an hour ago, signed with the server's JWT secret",
              hs_token({**claims, "iat": past - 7200, "exp": past - 3600,
                        "jti": str(uuid.uuid4())}, key[0]))],
        )
    else:
        yield _key_not_usable(report, "LIVE-AUTH-EXPIRED", key, claims, key_evidence)
    if key is not None and claims is not None and key_works:
        yield battery.judge(
            "LIVE-AUTH-ALG-PINNED",
            [(f"the run's claims signed {alg} with the server's JWT secret",
              hs_token(fresh(claims), key[0], alg)) for alg in ("HS384", "HS512")],
        )
    else:
        yield _key_not_usable(report, "LIVE-AUTH-ALG-PINNED", key, claims, key_evidence)


def _given_expired(battery: _Battery, token: str, key: tuple[str, str] | None) -> Finding:
    """--expired-token, judged only as far as it is known to be the server's own.

    With a working JWT secret its signature is verified first (a token signed with another key
    is the wrong-key case again). Without one, only the contract's expiry code (401 AUTH_002)
    shows the server read the token as its own and expired; a bare AUTH_001 may be a refusal of
    the signature, so it judges nothing.
    """
    item, report = "LIVE-AUTH-EXPIRED", battery.report
    exp = expiry_of(token)
    if exp is None or exp > time.time():
        return report.error(item, "the token given with --expired-token is not an expired JWT "
                                  "(no exp claim in the past)")
    what = "the expired token given with --expired-token"
    if key is not None:
        if not verifies_with(token, key[0]):
            return report.error(
                item, f"the token given with --expired-token is not signed with the server's JWT "
                f"secret (from {key[1]}, which signs tokens the server accepts): its refusal "
                "would only repeat LIVE-AUTH-WRONG-KEY; give one the server issued")
        return battery.judge(item, [(f"{what} (its signature verified with the JWT secret "
                                     f"from {key[1]})", token)])
    response = battery.probe(token)
    evidence = battery.client.evidence(response, f"{what} on GET {battery.path}")
    code = error_code_of(response)
    if response.status_code == 401 and code == "AUTH_002":
        return report.passed(
            item, f"{what}: 401 AUTH_002 (the contract's code for an expired token) on GET "
            f"{battery.path}, which answers 200 to the run's credential", evidence)
    if response.status_code == 401:
        return report.not_applicable(
            item, f"{what} got 401 {code or 'without an error code'}, not the contract's AUTH_002 "
            "for expiry, and its signature could not be verified without the server's JWT "
            "secret: the refusal may be of the signature, not the expiry. Give --jwt-secret "
            "(or $TASKFORGE_JWT_SECRET) or an --env-file with JWT_SECRET to verify it")
    if response.status_code == 429:
        return report.error(item, f"{what}: rate limited (429) before it could be judged",
                            evidence)
    # Accepted (or answered otherwise): wrong whatever its signature, a trusted one or not.
    accepted = "accepted" if response.status_code < 300 else f"answered {response.status_code}"
    return report.failed(
        item, f"{what} was {accepted} on GET {battery.path}", evidence,
        expected="401 (AUTH_002)", actual=f"{response.status_code} {code or ''}".strip())


def _key_not_usable(
    report: Report, item: str, key: tuple[str, str] | None, claims: dict[str, Any] | None,
    evidence: Evidence | None,
) -> Finding:
    if key is None:
        return report.not_applicable(
            item, f"the server's JWT secret is unknown, and a token signed with another key "
            f"only repeats LIVE-AUTH-WRONG-KEY: {HOW_TO_KNOW_THE_KEY}",
        )
    if claims is None:
        return report.not_applicable(item, f"no JWT issued to this run: {HOW_TO_GET_A_JWT}")
    assert evidence is not None
    return report.error(
        item, f"the JWT secret from {key[1]} does not sign tokens this server accepts "
        f"(a fresh token signed with it got {evidence.status_code}): give the server's own",
        evidence,
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
