"""The Quart application factory: middleware, the one error handler, and the lifespan of the pools.

`create_app(settings)` builds the app; the asyncpg pool, the Redis client and the engine are opened
in `before_serving` and closed in `after_serving`, so tests drive them with `app.test_app()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from typing import TYPE_CHECKING

import asyncpg
import redis.asyncio
import structlog
from quart import Quart, Response, current_app, g, request

from reference_server import answers
from reference_server.accounts import AccountStore
from reference_server.api import api_keys, auth, jobs, operations, queues, workers
from reference_server.api.common import (
    AppState,
    client_ip,
    json_response,
    request_header,
    request_id,
    state,
)
from reference_server.dbpool import open_pool
from reference_server.engine import Engine
from reference_server.exceptions import PayloadTooLarge
from reference_server.fastpath import SubmitFastPath
from reference_server.observability import configure_logging, get_logger
from reference_server.ratelimit import (
    LoginThrottle,
    RateLimiter,
    RedisGuard,
    RefreshTokenRegistry,
)
from reference_server.security import TokenService
from reference_server.slots import LongPolls, RequestSlots

if TYPE_CHECKING:
    from reference_server.config import Settings

REDIS_TIMEOUT_SECONDS = 0.5

log = get_logger("reference_server.http")


def create_app(settings: Settings, *, submit_fast_path: bool = True) -> Quart:
    """Build the application for these settings (secrets already present).

    `submit_fast_path=False` leaves every request to Quart (the tests compare both ways).
    """
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
        long_polls=LongPolls(
            total=settings.MAX_CONNECTIONS, per_credential=settings.LONG_POLLS_PER_CREDENTIAL
        ),
    )

    app.register_blueprint(operations.blueprint)
    if settings.METRICS_ENABLED:
        app.add_url_rule(
            settings.METRICS_ENDPOINT, "metrics", operations.metrics_view, methods=["GET"]
        )
    for module in (auth, api_keys, queues, jobs, workers):
        app.register_blueprint(module.blueprint, url_prefix=answers.API_PREFIX)

    app.before_serving(_open_resources)
    app.after_serving(_close_resources)
    app.before_request(_before_request)
    app.after_request(_after_request)
    app.register_error_handler(Exception, _handle_error)
    if submit_fast_path:
        # Quart's documented place for ASGI middleware; its test client goes through it too.
        app.asgi_app = SubmitFastPath(app, app.asgi_app)  # type: ignore[method-assign,assignment]
    app.asgi_app = RequestSlots(app.asgi_app, settings)  # type: ignore[method-assign,assignment]
    return app


# Lifespan ---------------------------------------------------------------------------------------


async def _open_resources() -> None:
    st = state()
    settings = st.settings
    dsn = settings.database_url
    if dsn is None:
        raise RuntimeError("DATABASE_URL is not set")
    # The engine's wake-up listener holds one pooled connection for good: two is the floor.
    st.pool = await open_pool(
        dsn, min_size=1, max_size=max(2, settings.POOL_SIZE), reset=_keep_session
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
    st.login_throttle = LoginThrottle(
        st.guard, fail_open=settings.login_throttle_failure_mode.value == "open"
    )
    st.refresh_tokens = RefreshTokenRegistry(st.guard)
    st.revocations_sync = asyncio.get_running_loop().create_task(
        st.refresh_tokens.keep_synced(), name="taskforge-revocations"
    )
    st.accounts = AccountStore(st.pool)
    st.engine = Engine.from_settings(st.pool, settings)
    await st.engine.start()
    if current_app.config.get("WATCH_SIGTERM"):
        _watch_sigterm(st)
    # What start-up built (modules, app, pools) lives as long as the process: out of the cyclic
    # collector's way, so its full collections walk only what requests allocate.
    gc.freeze()
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
    state behind: no SET, the listener UNLISTENs and drops its lessee lock before it releases,
    and migrations take their advisory lock on their own connection. asyncpg still rolls back
    an open transaction and drops listener callbacks before calling this.
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
    if st.revocations_sync is not None:
        st.revocations_sync.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await st.revocations_sync
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
    g.request_id = answers.request_id_for(request_header("x-request-id"))
    # Every log line of this request (engine included) carries its id; each request is a task
    # of its own, so the context does not leak into the next one.
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=g.request_id)
    st = state()
    st.http_log.debug("request started", method=request.method, path=request.path)
    settings = st.settings
    if request.method == "OPTIONS" and request_header("access-control-request-method"):
        response = Response(b"", status=204)
        for name, value in answers.preflight_headers(settings, request_header("origin")):
            response.headers[name] = value
        return response
    length = request.content_length
    if length is not None and length > settings.MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body over {settings.MAX_BODY_BYTES} bytes")
    return None


async def _after_request(response: Response) -> Response:
    st = state()
    request_id = str(getattr(g, "request_id", "") or answers.request_ids.next())
    # Looked up in one pass: werkzeug's setdefault/get raise (and build) an exception per miss.
    present = {name.lower() for name in response.headers.keys()}  # noqa: SIM118 - Headers
    headers = response.headers
    for name, value in answers.response_headers(
        st.settings,
        request_id=request_id,
        origin=request_header("origin"),
        rate_limit=getattr(g, "rate_limit_headers", {}),
        present=present,
    ):
        if name == "Vary":
            headers.add(name, value)
        else:
            headers[name] = value
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    elapsed = answers.elapsed_since(getattr(g, "started", time.perf_counter()))
    status = response.status_code
    answers.observe_duration(request.method, route, status, elapsed)
    if (
        answers.audited(request.method, request.path, status)
        and st.accounts is not None
        and not g.get("audit_written")
    ):
        target = getattr(g, "audit_target", None)
        if target is None and request.view_args:
            target = ",".join(str(v) for v in request.view_args.values())
        entry = answers.audit_entry(
            principal=getattr(g, "principal", None),
            fallback_org=getattr(g, "audit_org", None),
            fallback_actor=getattr(g, "audit_actor", "anonymous"),
            method=request.method,
            route=route,
            target=target,
            client_ip=client_ip(),
            request_id=str(g.request_id),
            status=status,
        )
        await answers.write_audit(st.accounts, entry)
    answers.log_request(
        st.http_log,
        method=request.method,
        path=request.path,
        route=route,
        status=status,
        seconds=elapsed,
    )
    return response


async def _handle_error(exc: Exception) -> Response:
    """The one error handler: the contract's envelope for every exception (answers's mapping)."""
    reply = answers.error_reply(exc)
    return json_response(reply.body(request_id()), reply.status, reply.headers)


def app_from_environment() -> Quart:
    """The app of a `serve` worker process: settings from the environment the parent prepared."""
    import os
    from pathlib import Path

    from reference_server.config import load_settings

    env_file = os.environ.get("TASKFORGE_ENV_FILE")
    app = create_app(load_settings(Path(env_file) if env_file else None))
    app.config["WATCH_SIGTERM"] = True  # a server process of its own, not a test's
    return app
