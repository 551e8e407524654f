"""What every answer shares, whoever builds it: the Quart app or the submit fast path.

Envelopes, the mapping of exceptions to the contract's errors, the response headers (request id,
rate limits, security, CORS) and the record each request leaves (duration metric, audit row, log
line). Nothing here knows Quart, so both paths answer alike by construction.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson
from werkzeug.exceptions import HTTPException

from reference_server import metrics
from reference_server.audit import AuditEntry
from reference_server.dbpool import database_unavailable
from reference_server.exceptions import ApiError, ServiceUnavailable
from reference_server.observability import get_logger

if TYPE_CHECKING:
    from reference_server.accounts import AccountStore
    from reference_server.config import Settings
    from reference_server.models import Job
    from reference_server.security import Principal

API_PREFIX = "/api/v1"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Methods that get a duration label value of their own.
KNOWN_METHODS = frozenset({"GET", "HEAD", "OPTIONS", *MUTATING_METHODS})
#: A client's X-Request-ID is echoed only when it is this tame (it ends up in logs and the audit).
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
RETRY_AFTER_SECONDS = "5"
CORS_ALLOWED_HEADERS = "Authorization, Content-Type, X-API-Key, X-Request-ID"
CORS_EXPOSED_HEADERS = (
    "X-Request-ID, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
)
CORS_METHODS = "GET, POST, PUT, DELETE, OPTIONS"

log = get_logger("reference_server.http")


class _RequestIds:
    """32 hex digits per request: a random prefix per process and a counter.

    Unique like a uuid4 where it matters (logs, audit rows, across workers), without an
    os.urandom call per request.
    """

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._seq = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._seq):016x}"


request_ids = _RequestIds()


def request_id_for(client_value: str | None) -> str:
    """The client's X-Request-ID when it is tame, else a fresh one."""
    if client_value and SANE_REQUEST_ID.match(client_value):
        return client_value
    return request_ids.next()


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def ok_body(data: Any, request_id: str, message: str | None = None) -> dict[str, Any]:
    """The success envelope of the contract."""
    body: dict[str, Any] = {"success": True, "data": data}
    if message is not None:
        body["message"] = message
    body["timestamp"] = now_iso()
    body["request_id"] = request_id
    return body


def stored_job_body(job: Job, request_id: str) -> bytes:
    """The success answer's body for a job that is committed (its audit row saying 201 or 200
    with it), encoded. Rendering the whole job can fail after the commit; the answer then says
    what is known, the job's id, rather than a 500 that would invite a retry storing it twice."""
    try:
        return orjson.dumps(ok_body(job.to_api(), request_id), default=str)
    except Exception as exc:
        log.exception("stored job not rendered", error=type(exc).__name__, job_id=str(job.id))
        known = {"id": str(job.id), "status": job.status.value}
        return orjson.dumps(ok_body(known, request_id, "job stored; GET it for the rest"))


def error_body(code: str, message: str, details: Any, request_id: str) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"success": False, "error": error, "timestamp": now_iso(), "request_id": request_id}


# Errors -----------------------------------------------------------------------------------------

_HTTP_CODES = {
    400: "VALIDATION_001",
    401: "AUTH_001",
    403: "PERM_001",
    404: "RESOURCE_NOT_FOUND",
    # The contract has no code of its own for 405: the request is malformed, so VALIDATION_001.
    405: "VALIDATION_001",
    409: "RESOURCE_CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMIT_EXCEEDED",
    503: "SERVICE_UNAVAILABLE",
}
_HTTP_MESSAGES = {
    400: "bad request",
    404: "no such resource",
    405: "method not allowed",
    413: "request body too large",
    415: "unsupported media type",
}


@dataclass(frozen=True, slots=True)
class ErrorReply:
    status: int
    code: str
    message: str
    details: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self, request_id: str) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details, request_id)


def error_reply(exc: BaseException) -> ErrorReply:
    """Map every exception to the contract's error envelope; internals never leave the process."""
    if isinstance(exc, ApiError):
        reply = ErrorReply(exc.status, exc.code, exc.message, exc.details, dict(exc.headers))
    elif isinstance(exc, HTTPException):
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "VALIDATION_001")
        message = _HTTP_MESSAGES.get(status, exc.name.lower())
        details: Any = None
        headers: dict[str, str] = {}
        if status == 400:
            details = [{"field": "body", "message": "malformed request"}]
        allowed = getattr(exc, "valid_methods", None)
        if status == 405 and allowed:
            headers["Allow"] = ", ".join(sorted(allowed))
            details = [{"field": "method", "message": f"allowed: {headers['Allow']}"}]
        reply = ErrorReply(status, code, message, details, headers)
    elif isinstance(exc, asyncpg.DataError):
        # PostgreSQL refused a value the schema let through (a NUL character, say): the client's.
        reply = ErrorReply(
            400,
            "VALIDATION_001",
            "request validation failed",
            [{"field": "body", "message": "a value cannot be stored"}],
        )
    elif database_unavailable(exc):
        log.error("database unavailable", error=type(exc).__name__)
        reply = ErrorReply(
            503,
            "SERVICE_UNAVAILABLE",
            "database unavailable",
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    else:
        log.exception("unhandled error", error=type(exc).__name__)
        reply = ErrorReply(500, "INTERNAL_ERROR", "internal error")
    if isinstance(exc, ServiceUnavailable) and "Retry-After" not in reply.headers:
        reply.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return reply


# Response headers -------------------------------------------------------------------------------


def allowed_origin(origin: str | None, allowed: list[str]) -> str | None:
    """The Access-Control-Allow-Origin value for this origin, or None when it is refused.

    `*` is honoured as configured (production refuses to start with it), so that a deployment
    misconfigured this way shows it to the conformance checks instead of hiding it.
    """
    if not origin:
        return None
    if "*" in allowed:
        return "*"
    return origin if origin in allowed else None


def preflight_headers(settings: Settings, origin: str | None) -> list[tuple[str, str]]:
    allow = allowed_origin(origin, settings.CORS_ALLOWED_ORIGINS)
    if not allow:
        return []
    return [
        ("Access-Control-Allow-Origin", allow),
        ("Access-Control-Allow-Methods", CORS_METHODS),
        ("Access-Control-Allow-Headers", CORS_ALLOWED_HEADERS),
        ("Access-Control-Max-Age", "600"),
    ]


def response_headers(
    settings: Settings,
    *,
    request_id: str,
    origin: str | None,
    rate_limit: dict[str, str],
    present: set[str],
) -> list[tuple[str, str]]:
    """The headers every response carries, in order; `present`: lower-case names already set.

    Rate-limit headers a response set itself (a 429's) win over the ones counted for it.
    """
    out = [("X-Request-ID", request_id)]
    out.extend((k, v) for k, v in rate_limit.items() if k.lower() not in present)
    out.extend(fixed_headers(settings, origin, has_cache_control="cache-control" in present))
    return out


def fixed_headers(
    settings: Settings, origin: str | None, *, has_cache_control: bool
) -> list[tuple[str, str]]:
    """The security and CORS headers: the same for every response to one origin."""
    out = []
    if settings.SECURITY_HSTS:
        out.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    out.append(("Content-Security-Policy", settings.SECURITY_CSP))
    out.append(("X-Content-Type-Options", "nosniff"))
    out.append(("X-Frame-Options", "DENY"))
    out.append(("Referrer-Policy", "no-referrer"))
    if not has_cache_control:
        out.append(("Cache-Control", "no-store"))
    out.append(("Vary", "Origin"))
    allow = allowed_origin(origin, settings.CORS_ALLOWED_ORIGINS)
    if allow:
        out.append(("Access-Control-Allow-Origin", allow))
        out.append(("Access-Control-Expose-Headers", CORS_EXPOSED_HEADERS))
    return out


# What a request leaves behind -------------------------------------------------------------------

#: (method, route, status) -> its histogram child: labels() costs a lock and a tuple per call.
_durations: dict[tuple[str, str, int], Any] = {}
#: Methods and routes are few, but a client chooses the method of an unmatched request.
_DURATIONS_KEPT = 512


def observe_duration(method: str, route: str, status: int, seconds: float) -> None:
    if method not in KNOWN_METHODS:  # any token is a method to HTTP: one label for the rest
        method = "other"
    key = (method, route, status)
    child = _durations.get(key)
    if child is None:
        child = metrics.HTTP_REQUEST_DURATION.labels(
            method=method, route=route, status_code=str(status)
        )
        if len(_durations) < _DURATIONS_KEPT:
            _durations[key] = child
    child.observe(seconds)


def audited(method: str, path: str, status: int) -> bool:
    """Mutating API calls leave an audit row; a 429 did nothing, and auditing it would turn a
    flood into as many database writes. Nor a 503: the database (or Redis) was not there, and
    writing its row would hold the answer for another wait on the database that just failed."""
    refused = status in (429, 503)
    return method in MUTATING_METHODS and path.startswith(API_PREFIX + "/") and not refused


def audit_entry(
    *,
    principal: Principal | None,
    fallback_org: Any,
    fallback_actor: str,
    method: str,
    route: str,
    target: str | None,
    client_ip: str,
    request_id: str,
    status: int,
) -> AuditEntry:
    return AuditEntry(
        actor=principal.actor if principal is not None else fallback_actor,
        organization_id=principal.organization_id if principal is not None else fallback_org,
        action=f"{method} {route}",
        target=target,
        source_ip=None if client_ip == "unknown" else client_ip,
        request_id=request_id,
        status_code=status,
    )


async def write_audit(accounts: AccountStore, entry: AuditEntry) -> None:
    """The audit row, committed before the answer leaves; a failure is logged, not answered."""
    try:
        await accounts.audit(entry)
    except Exception as exc:
        log.error("audit row not written", error=type(exc).__name__, action=entry.action)


def elapsed_since(started: float) -> float:
    return time.perf_counter() - started


def log_request(
    http_log: Any,
    *,
    method: str,
    path: str,
    route: str,
    status: int,
    seconds: float,
    **context: str,
) -> None:
    """The request's log line; `context`: request_id and caller ids when not bound already."""
    http_log.info(
        "request",
        method=method,
        path=path,
        route=route,
        status=status,
        duration_ms=round(seconds * 1000, 2),
        **context,
    )
