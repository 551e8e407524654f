"""The HTTP side of the live checks: one client factory, login, envelopes, and curl reproducers.

Every exchange a finding rests on is kept as a curl command with the secrets redacted, so a reader
can replay it without the report leaking a token or a password.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import ssl
import threading
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx

from conformance.checks.live import reach
from conformance.checks.live.common import deployment_input, metrics_path, shorten, target_of
from conformance.model import Evidence, Finding
from conformance.resolve import describe
from conformance.resolve import transport as resolving_transport

if TYPE_CHECKING:
    from conformance.checks.live.common import Report
    from conformance.checks.registry import CheckContext
    from conformance.stack import Target

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 10.0
#: Connection attempts retried by the transport; an HTTP answer is never retried blindly.
CONNECT_RETRIES = 2
#: A 429 is waited out once when the server asks for at most this long (the rate-limit probe may
#: have used up the budget another check needs).
MAX_RETRY_AFTER_SECONDS = 5.0
USER_AGENT = "taskforge-conformance"

REDACTED = "<redacted>"
_SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "cookie", "set-cookie", "proxy-authorization"}
)
_SECRET_KEY = re.compile(r"pass(word)?|token|secret|api[_-]?key|credential", re.IGNORECASE)
_SHOWN_HEADERS = (
    "content-type", "strict-transport-security", "content-security-policy",
    "x-content-type-options", "x-frame-options", "referrer-policy",
    "access-control-allow-origin", "access-control-allow-methods",
    "access-control-allow-headers", "access-control-allow-credentials", "vary",
    "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after",
    "x-request-id", "location", "www-authenticate",
)


def ssl_context(target: Target) -> ssl.SSLContext:
    """Verification against the target's CA bundle when it has one, else the system's store."""
    if target.ca_bundle is not None:
        return ssl.create_default_context(cafile=str(target.ca_bundle))
    return ssl.create_default_context()


def make_client(
    target: Target, *, timeout: float = READ_TIMEOUT_SECONDS, insecure: bool = False
) -> httpx.Client:
    """A client bound to the target: verified TLS, bounded timeouts, bounded connect retries.

    `insecure` (--insecure) skips certificate verification for the HTTP checks only; the TLS
    checks still judge the certificate.
    """
    verify: ssl.SSLContext | bool = False if insecure else ssl_context(target)
    # --resolve: the name stays in the URL, Host and SNI; the connection goes to the address.
    transport = resolving_transport(target.resolve_map, verify=verify, retries=CONNECT_RETRIES)
    return httpx.Client(
        base_url=target.base_url.rstrip("/"),
        transport=transport,
        timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_SECONDS),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )


def _redact_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: REDACTED if _SECRET_KEY.search(str(k)) else _redact_json(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    return value


def redact_body(content: bytes) -> str:
    """A request or response body with every secret-looking JSON field replaced."""
    if not content:
        return ""
    try:
        return json.dumps(_redact_json(json.loads(content)), separators=(",", ":"))
    except ValueError:
        text = content.decode("utf-8", "replace")
        # Not JSON: still hide anything that looks like a bearer token or key=value secret.
        text = re.sub(r"(?i)(bearer\s+)\S+", r"\1" + REDACTED, text)
        return re.sub(r"(?i)((?:pass(?:word)?|token|secret)\w*[=:]\s*)\S+", r"\1" + REDACTED, text)


def redact_header(name: str, value: str) -> str:
    if name.lower() not in _SECRET_HEADERS:
        return value
    scheme, _, rest = value.partition(" ")
    return f"{scheme} {REDACTED}" if rest and name.lower() == "authorization" else REDACTED


def curl_for(
    request: httpx.Request, *, cacert: Path | None = None, insecure: bool = False
) -> str:
    """A curl command that replays the request, with credentials and secrets redacted."""
    parts = ["curl", "-sS", "-i"]
    if insecure:
        parts.append("-k")
    elif cacert is not None:
        parts += ["--cacert", str(cacert)]
    if request.method != "GET":
        parts += ["-X", request.method]
    skip = {"host", "content-length", "accept-encoding", "connection", "user-agent", "accept"}
    for raw_name, raw_value in request.headers.raw:  # raw: as sent, with its spelling
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if name.lower() not in skip:
            parts += ["-H", f"{name}: {redact_header(name, value)}"]
    body = redact_body(request.content)
    if body:
        parts += ["--data-raw", body]
    parts.append(str(request.url))
    return shlex.join(parts)


def shown_headers(headers: Mapping[str, str]) -> dict[str, str]:
    lower = {k.lower(): v for k, v in headers.items()}
    return {name: lower[name] for name in _SHOWN_HEADERS if name in lower}


@dataclass(frozen=True, kw_only=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str | None


class LiveClient:
    """An httpx client for one target, which also writes evidence for its exchanges."""

    def __init__(
        self, target: Target, *, timeout: float = READ_TIMEOUT_SECONDS, insecure: bool = False
    ) -> None:
        self.target = target
        self.insecure = insecure
        self.verify: ssl.SSLContext | bool = False if insecure else ssl_context(target)
        self.http = make_client(target, timeout=timeout, insecure=insecure)

    def __enter__(self) -> LiveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(
        self, method: str, path: str, *, retry_429: bool = True, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            # A target gone mid-run blocks the rest (reach.py); one that still answers does not.
            reach.after_transport_error(self.target, self.verify, method, path, exc)
            raise
        if retry_429 and response.status_code == 429:
            wait = retry_after_seconds(response.headers.get("retry-after"))
            if wait is not None and wait <= MAX_RETRY_AFTER_SECONDS:
                time.sleep(max(wait, 0.1))
                response = self.http.request(method, path, **kwargs)
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def curl(self, request: httpx.Request) -> str:
        command = curl_for(request, cacert=self.target.ca_bundle, insecure=self.insecure)
        mapped = describe(str(request.url), self.target.resolve_map)
        return command.replace("curl ", f"curl {mapped} ", 1) if mapped else command

    def evidence(self, response: httpx.Response, summary: str = "") -> Evidence:
        return Evidence(
            kind="http",
            summary=summary or f"{response.request.method} {response.request.url.path}",
            curl=self.curl(response.request),
            status_code=response.status_code,
            headers=shown_headers(response.headers),
            output=shorten(redact_body(response.content)),
        )


def client_for(ctx: CheckContext, *, timeout: float = READ_TIMEOUT_SECONDS) -> LiveClient:
    """The LiveClient of a check: the context's target, verified unless --insecure was given.

    Raises Blocked when the target cannot be judged over HTTP (see reach.py).
    """
    target = target_of(ctx)
    reach.gate(target, insecure=ctx.insecure)
    return LiveClient(target, timeout=timeout, insecure=ctx.insecure)


def metrics_client(
    ctx: CheckContext, *, timeout: float = READ_TIMEOUT_SECONDS
) -> tuple[LiveClient, str, str]:
    """(client, path, hop) for scraping the app's metrics as Prometheus does.

    With --metrics-url (the address Prometheus scrapes, often behind the public front door),
    there; else the public URL's metrics path. `hop` names which address answered, for evidence.
    """
    target = target_of(ctx)
    url = deployment_input(ctx, "metrics_url")
    if url is None:
        public = f"the public URL {target.base_url}"
        return client_for(ctx, timeout=timeout), metrics_path(ctx), public
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    scraped = dataclasses.replace(target, base_url=origin)
    client = LiveClient(scraped, timeout=timeout, insecure=ctx.insecure)
    return client, parts.path or "/metrics", f"the metrics address {origin} (--metrics-url)"


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def payload_of(response: httpx.Response) -> Any:
    """The body's `data` for a success envelope, else the whole JSON body (None if not JSON)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and "success" in body and "data" in body:
        return body["data"]
    return body


def error_code_of(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code")) if isinstance(error, dict) and error.get("code") else None


# Logins are cached per (base URL, email): every check of a run shares one session per process,
# so a run does not trip the login throttle.
_TOKENS: dict[tuple[str, str], Tokens] = {}
_TOKENS_LOCK = threading.Lock()


def login_credentials(ctx: CheckContext) -> tuple[str, str] | None:
    target = target_of(ctx)
    email = ctx.email or target.admin_email
    password = ctx.password or target.admin_password
    return (email, password) if email and password else None


def login(ctx: CheckContext, client: LiveClient) -> Tokens | None:
    """Log in with the context's credentials (cached); None when the context has none."""
    credentials = login_credentials(ctx)
    if credentials is None:
        return None
    key = (client.target.base_url, credentials[0])
    with _TOKENS_LOCK:
        if key in _TOKENS:
            return _TOKENS[key]
        response = client.post(
            "/api/v1/auth/login", json={"email": credentials[0], "password": credentials[1]}
        )
        data = payload_of(response)
        if response.status_code != 200 or not isinstance(data, dict) or "access_token" not in data:
            raise LoginError(client.evidence(response, "login with the given credentials"))
        tokens = Tokens(
            access_token=str(data["access_token"]),
            refresh_token=str(data["refresh_token"]) if data.get("refresh_token") else None,
        )
        _TOKENS[key] = tokens
        return tokens


class LoginError(RuntimeError):
    """The credentials given for the target were refused."""

    def __init__(self, evidence: Evidence) -> None:
        super().__init__(f"login refused with HTTP {evidence.status_code}")
        self.evidence = evidence


def auth_headers(ctx: CheckContext, client: LiveClient) -> dict[str, str] | None:
    """Headers that authenticate as the user the run acts for; None when no credential is known.

    Raises LoginError when login credentials are given but refused.
    """
    api_key = ctx.api_key
    if ctx.token:
        return {"Authorization": f"Bearer {ctx.token}"}
    if api_key:
        return {"X-API-Key": api_key}
    tokens = login(ctx, client)
    return {"Authorization": f"Bearer {tokens.access_token}"} if tokens else None


CredentialT = TypeVar("CredentialT")


def credential_or_findings(
    report: Report, items: Sequence[str], missing: str,
    credential: Callable[[], CredentialT | None],
) -> Generator[Finding, None, CredentialT | None]:
    """`credential()`, the run's credential; or None once each of `items` has a finding, an
    error when the login was refused, not_applicable (`missing` says what to give) when no
    credential was given. A check writes `found = yield from credential_or_findings(...)`."""
    try:
        found = credential()
    except LoginError as exc:
        for item in items:
            yield report.error(item, str(exc), exc.evidence)
        return None
    if found is None:
        for item in items:
            yield report.not_applicable(item, missing)
    return found


def secrets_in_use(ctx: CheckContext) -> dict[str, str]:
    """Secrets the run knows (and logs must never show), by a name for the report."""
    found: dict[str, str] = {}
    if ctx.token:
        found["the token given with --token"] = ctx.token
    if ctx.api_key:
        found["the API key given with --api-key"] = ctx.api_key
    credentials = login_credentials(ctx)
    if credentials is not None:
        found["the login password"] = credentials[1]
        target = target_of(ctx)
        tokens = _TOKENS.get((target.base_url, credentials[0]))
        if tokens is not None:
            found["the access token"] = tokens.access_token
            if tokens.refresh_token:
                found["the refresh token"] = tokens.refresh_token
    return found


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()
