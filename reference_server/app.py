"""The Quart application factory: middleware, the one error handler, and the lifespan of the pools.

`create_app(settings)` builds the app; the asyncpg pool, the Redis client and the engine are opened
in `before_serving` and closed in `after_serving`, so tests drive them with `app.test_app()`.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import secrets
import signal
import time
from typing import TYPE_CHECKING, Any

import asyncpg
import redis.asyncio
import structlog
from quart import Quart, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from reference_server import metrics
from reference_server.accounts import AccountStore, AuditEntry
from reference_server.api import api_keys, auth, jobs, operations, queues, workers
from reference_server.api.common import (
    AppState,
    client_ip,
    error_body,
    json_response,
    request_header,
    state,
)
from reference_server.engine import Engine
from reference_server.exceptions import (
    ApiError,
    PayloadTooLarge,
    ServiceUnavailable,
)
from reference_server.observability import configure_logging, get_logger
from reference_server.ratelimit import (
    LoginThrottle,
    RateLimiter,
    RedisGuard,
    RefreshTokenRegistry,
)
from reference_server.security import TokenService

if TYPE_CHECKING:
    from reference_server.config import Settings

API_PREFIX = "/api/v1"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: A client's X-Request-ID is echoed only when it is this tame (it ends up in logs and the audit).
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
REDIS_TIMEOUT_SECONDS = 0.5
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


_request_ids = _RequestIds()

#: Errors meaning "the database is not there", answered with 503 rather than 500.
_DB_DOWN_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # A connection dying mid-operation can leave asyncpg's protocol state confused ("cannot
    # switch to state ..."): seen when PostgreSQL stops under load; transient, so 503.
    asyncpg.InternalClientError,
)


def _database_unavailable(exc: BaseException) -> bool:
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 5:
        if isinstance(current, _DB_DOWN_ERRORS):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def create_app(settings: Settings) -> Quart:
    """Build the application for these settings (secrets already present)."""
    if not settings.JWT_SECRET or not settings.JWT_REFRESH_SECRET:
        settings = settings.with_generated_secrets()
    assert settings.JWT_SECRET is not None and settings.JWT_REFRESH_SECRET is not None
    configure_logging(settings)

    app = Quart("reference_server", static_folder=None)  # no /static route outside the contract
    app.config["MAX_CONTENT_LENGTH"] = settings.MAX_BODY_BYTES
    app.config["BODY_TIMEOUT"] = 30
    # Every response here is a buffered body that Granian takes at once; a timeout would wrap
    # each send in a task of its own (asyncio.wait_for) for nothing. Slow request bodies are
    # still bounded by BODY_TIMEOUT.
    app.config["RESPONSE_TIMEOUT"] = None
    # Quart would answer OPTIONS itself; preflights are ours (CORS exactly as configured).
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.extensions["taskforge"] = AppState(
        settings=settings,
        tokens=TokenService(
            access_secret=settings.JWT_SECRET,
            refresh_secret=settings.JWT_REFRESH_SECRET,
            access_minutes=settings.JWT_EXPIRY_TIME_MINUTES,
            refresh_minutes=settings.JWT_REFRESH_EXPIRY_TIME_MINUTES,
        ),
        http_log=structlog.get_logger("reference_server.http").bind(),
    )

    app.register_blueprint(operations.blueprint)
    if settings.METRICS_ENABLED:
        app.add_url_rule(
            settings.METRICS_ENDPOINT, "metrics", operations.metrics_view, methods=["GET"]
        )
    for module in (auth, api_keys, queues, jobs, workers):
        app.register_blueprint(module.blueprint, url_prefix=API_PREFIX)

    app.before_serving(_open_resources)
    app.after_serving(_close_resources)
    app.before_request(_before_request)
    app.after_request(_after_request)
    app.register_error_handler(Exception, _handle_error)
    return app


# Lifespan ---------------------------------------------------------------------------------------


async def _open_resources() -> None:
    st = state()
    settings = st.settings
    dsn = settings.database_url
    if dsn is None:
        raise RuntimeError("DATABASE_URL is not set")
    # The engine's wake-up listener holds one pooled connection for good: two is the floor.
    st.pool = await asyncpg.create_pool(
        dsn,
        min_size=1,
        max_size=max(2, settings.POOL_SIZE),
        timeout=10,
        command_timeout=60,
        reset=_keep_session,
    )
    if settings.redis_url:
        st.redis = redis.asyncio.Redis.from_url(
            settings.redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
    st.guard = RedisGuard(st.redis)
    fail_open = settings.RATE_LIMIT_FAILURE_MODE.value == "open"
    st.limiter = RateLimiter(
        st.guard,
        per_minute=settings.RATE_LIMIT_PER_MINUTE,
        enabled=settings.RATE_LIMIT_ENABLED,
        fail_open=fail_open,
    )
    st.login_throttle = LoginThrottle(st.guard, fail_open=fail_open)
    st.refresh_tokens = RefreshTokenRegistry(st.guard)
    st.accounts = AccountStore(st.pool)
    st.engine = Engine.from_settings(st.pool, settings)
    await st.engine.start()
    if current_app.config.get("WATCH_SIGTERM"):
        _watch_sigterm(st)
    log.info(
        "serving",
        environment=settings.APP_ENVIRONMENT.value,
        pool_size=settings.POOL_SIZE,
        redis=st.redis is not None,
    )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Nothing to reset when a connection returns to the pool.

    asyncpg's default reset costs a round trip per release (RESET ALL, UNLISTEN *, advisory
    unlock), doubling the round trips of a one-statement request. Nothing here leaves session
    state behind: no SET, the listener UNLISTENs before it releases, and advisory locks are
    taken only by migrations on their own connection. asyncpg still rolls back an open
    transaction and drops listener callbacks before calling this.
    """
    del conn


def _begin_shutdown(st: AppState) -> None:
    """Stop leasing now: long-polls answer [] and built-in jobs get their grace period."""
    if not st.shutting_down:
        log.info("shutting down: leasing stopped", grace_seconds=st.settings.SHUTDOWN_GRACE_SECONDS)
    st.shutting_down = True
    if st.engine is not None and st.engine_stop is None:
        st.engine_stop = asyncio.get_running_loop().create_task(
            st.engine.stop(st.settings.SHUTDOWN_GRACE_SECONDS)
        )


def _watch_sigterm(st: AppState) -> None:
    """On SIGTERM, begin the engine's shutdown at once, not after the server drains.

    The server (Granian) waits for in-flight requests before the lifespan ends, and a long-poll
    may last 30 s. Its own loop handler still fires: the loop learns of signals through the wakeup
    fd, whichever Python-level handler is installed, so this one only adds to it.
    """
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):  # Ctrl-C in a terminal means the same
        previous = signal.getsignal(signum)

        def on_signal(number: int, frame: object, previous: object = previous) -> None:
            loop.call_soon_threadsafe(_begin_shutdown, st)
            if callable(previous):
                previous(number, frame)

        signal.signal(signum, on_signal)


async def _close_resources() -> None:
    st = state()
    _begin_shutdown(st)
    if st.engine_stop is not None:
        await st.engine_stop
    if st.redis is not None:
        await st.redis.aclose()
    if st.pool is not None:
        await st.pool.close()
    log.info("stopped")


# Middleware -------------------------------------------------------------------------------------


async def _before_request() -> Response | None:
    g.started = time.perf_counter()
    # Per-request memos of api.common (headers, client address), fresh for each request.
    g._request_headers = None
    g._client_ip = None
    client_id = request_header("x-request-id") or ""
    g.request_id = client_id if SANE_REQUEST_ID.match(client_id) else _request_ids.next()
    # Every log line of this request (engine included) carries its id; each request is a task
    # of its own, so the context does not leak into the next one.
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=g.request_id)
    st = state()
    st.http_log.debug("request started", method=request.method, path=request.path)
    settings = st.settings
    if request.method == "OPTIONS" and request_header("access-control-request-method"):
        return _preflight()
    length = request.content_length
    if length is not None and length > settings.MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body over {settings.MAX_BODY_BYTES} bytes")
    return None


def _allowed_origin(origin: str | None, allowed: list[str]) -> str | None:
    """The Access-Control-Allow-Origin value for this origin, or None when it is refused.

    `*` is honoured as configured (production refuses to start with it), so that a deployment
    misconfigured this way shows it to the conformance checks instead of hiding it.
    """
    if not origin:
        return None
    if "*" in allowed:
        return "*"
    return origin if origin in allowed else None


def _preflight() -> Response:
    response = Response(b"", status=204)
    allow = _allowed_origin(request_header("origin"), state().settings.CORS_ALLOWED_ORIGINS)
    if allow:
        response.headers["Access-Control-Allow-Origin"] = allow
        response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
        response.headers["Access-Control-Allow-Headers"] = CORS_ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    return response


def _security_headers(response: Response, present: set[str]) -> None:
    """The security and CORS headers; `present`: the lower-case names the response already has."""
    settings = state().settings
    headers = response.headers
    if settings.SECURITY_HSTS:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    headers["Content-Security-Policy"] = settings.SECURITY_CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    if "cache-control" not in present:
        headers["Cache-Control"] = "no-store"
    headers.add("Vary", "Origin")
    allow = _allowed_origin(request_header("origin"), settings.CORS_ALLOWED_ORIGINS)
    if allow:
        headers["Access-Control-Allow-Origin"] = allow
        headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS


async def _after_request(response: Response) -> Response:
    request_id = str(getattr(g, "request_id", "") or _request_ids.next())
    # Looked up in one pass: werkzeug's setdefault/get raise (and build) an exception per miss.
    present = {name.lower() for name in response.headers.keys()}  # noqa: SIM118 - Headers
    response.headers["X-Request-ID"] = request_id
    for name, value in getattr(g, "rate_limit_headers", {}).items():
        if name.lower() not in present:
            response.headers[name] = value
    _security_headers(response, present)
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    elapsed = time.perf_counter() - getattr(g, "started", time.perf_counter())
    _request_duration(request.method, route, response.status_code).observe(elapsed)
    principal = getattr(g, "principal", None)
    # A 429 did nothing, and auditing it would turn a flood into as many database writes.
    if (
        request.method in MUTATING_METHODS
        and request.path.startswith(API_PREFIX + "/")
        and response.status_code != 429
    ):
        await _audit(response, route, principal)
    state().http_log.info(
        "request",
        method=request.method,
        path=request.path,
        route=route,
        status=response.status_code,
        duration_ms=round(elapsed * 1000, 2),
    )
    return response


#: (method, route, status) -> its histogram child: labels() costs a lock and a tuple per call.
_durations: dict[tuple[str, str, int], Any] = {}
#: Methods and routes are few, but a client chooses the method of an unmatched request.
_DURATIONS_KEPT = 512


def _request_duration(method: str, route: str, status: int) -> Any:
    key = (method, route, status)
    child = _durations.get(key)
    if child is None:
        child = metrics.HTTP_REQUEST_DURATION.labels(
            method=method, route=route, status_code=str(status)
        )
        if len(_durations) < _DURATIONS_KEPT:
            _durations[key] = child
    return child


async def _audit(response: Response, route: str, principal: Any) -> None:
    st = state()
    if st.accounts is None:
        return
    target = getattr(g, "audit_target", None)
    if target is None and request.view_args:
        target = ",".join(str(v) for v in request.view_args.values())
    org_id = principal.organization_id if principal is not None else getattr(g, "audit_org", None)
    actor = principal.actor if principal is not None else getattr(g, "audit_actor", "anonymous")
    ip = client_ip()
    entry = AuditEntry(
        actor=actor,
        organization_id=org_id,
        action=f"{request.method} {route}",
        target=target,
        source_ip=None if ip == "unknown" else ip,
        request_id=str(g.request_id),
        status_code=response.status_code,
    )
    try:
        await st.accounts.audit(entry)
    except Exception as exc:
        log.error("audit row not written", error=type(exc).__name__, action=entry.action)


# The one error handler --------------------------------------------------------------------------

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


async def _handle_error(exc: Exception) -> Response:
    """Map every exception to the contract's error envelope; internals never leave the process."""
    if isinstance(exc, ApiError):
        status, code, message, details, headers = (
            exc.status,
            exc.code,
            exc.message,
            exc.details,
            dict(exc.headers),
        )
    elif isinstance(exc, HTTPException):
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "VALIDATION_001")
        message = _HTTP_MESSAGES.get(status, exc.name.lower())
        details, headers = None, {}
        if status == 400:
            details = [{"field": "body", "message": "malformed request"}]
        allowed = getattr(exc, "valid_methods", None)
        if status == 405 and allowed:
            headers["Allow"] = ", ".join(sorted(allowed))
            details = [{"field": "method", "message": f"allowed: {headers['Allow']}"}]
    elif isinstance(exc, asyncpg.DataError):
        # PostgreSQL refused a value the schema let through (a NUL character, say): the client's.
        status, code, message, headers = 400, "VALIDATION_001", "request validation failed", {}
        details = [{"field": "body", "message": "a value cannot be stored"}]
    elif _database_unavailable(exc):
        log.error("database unavailable", error=type(exc).__name__)
        status, code, message, details = 503, "SERVICE_UNAVAILABLE", "database unavailable", None
        headers = {"Retry-After": RETRY_AFTER_SECONDS}
    else:
        log.exception("unhandled error", error=type(exc).__name__)
        status, code, message, details, headers = (
            500,
            "INTERNAL_ERROR",
            "internal error",
            None,
            {},
        )
    if isinstance(exc, ServiceUnavailable) and "Retry-After" not in headers:
        headers["Retry-After"] = RETRY_AFTER_SECONDS
    return json_response(error_body(code, message, details), status, headers)


def app_from_environment() -> Quart:
    """The app of a `serve` worker process: settings from the environment the parent prepared."""
    import os
    from pathlib import Path

    from reference_server.config import load_settings

    env_file = os.environ.get("TASKFORGE_ENV_FILE")
    app = create_app(load_settings(Path(env_file) if env_file else None))
    app.config["WATCH_SIGTERM"] = True  # a server process of its own, not a test's
    return app
