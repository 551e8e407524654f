"""Operations endpoints at the root: /health, /ready, the metrics path and /openapi.json."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from importlib import resources
from typing import Any

from quart import Blueprint, Response

from reference_server import __version__, job_metrics, metrics
from reference_server.answers import now_iso
from reference_server.api.common import (
    client_ip,
    json_response,
    request_header,
    request_id,
    state,
)
from reference_server.exceptions import NotFound
from reference_server.migrate import migration_status
from reference_server.observability import get_logger, metrics_exposition

blueprint = Blueprint("operations", __name__)
log = get_logger("reference_server.health")


async def _database_probe(timeout: float) -> tuple[bool, dict[str, Any] | None]:
    """(database reachable, migration status) within timeout."""
    pool = state().pool
    if pool is None:
        return False, None
    try:
        async with asyncio.timeout(timeout), pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
            status = await migration_status(conn)
    except Exception as exc:
        log.warning("database probe failed", error=type(exc).__name__)
        return False, None
    return True, {
        "applied_version": status.applied_version,
        "latest_version": status.latest_version,
        "current": status.current,
    }


async def _redis_probe(timeout: float) -> bool:
    guard = state().guard
    if guard is None:
        return False
    try:
        async with asyncio.timeout(timeout):
            return await guard.ping()
    except TimeoutError:
        guard.mark_down()
        return False


@blueprint.get("/health")
async def health() -> Response:
    timeout = state().settings.HEALTH_CHECK_TIMEOUT_SECONDS
    (db_ok, migrations), redis_ok = await asyncio.gather(
        _database_probe(timeout), _redis_probe(timeout)
    )
    if not db_ok:
        status = "down"
    elif not redis_ok or not (migrations and migrations["current"]):
        status = "degraded"
    else:
        status = "ok"
    body = {
        "status": status,
        "checks": {
            "database": "ok" if db_ok else "down",
            "redis": "ok" if redis_ok else "down",
            "migrations": migrations if migrations is not None else {"current": False},
        },
        "version": __version__,
        # What happens while Redis is down: requests limited or not, logins throttled or refused.
        "rate_limit_failure_modes": {
            "requests": state().settings.RATE_LIMIT_FAILURE_MODE.value,
            "login": state().settings.login_throttle_failure_mode.value,
        },
        "timestamp": now_iso(),
        "request_id": request_id(),
    }
    headers = {"Retry-After": "5"} if status == "down" else None
    return json_response(body, 503 if status == "down" else 200, headers)


@blueprint.get("/ready")
async def ready() -> Response:
    st = state()
    db_ok, migrations = await _database_probe(st.settings.HEALTH_CHECK_TIMEOUT_SECONDS)
    is_ready = db_ok and bool(migrations and migrations["current"]) and not st.shutting_down
    body = {
        "ready": is_ready,
        "checks": {"database": "ok" if db_ok else "down", "migrations": migrations},
        "timestamp": now_iso(),
        "request_id": request_id(),
    }
    return json_response(body, 200 if is_ready else 503, None if is_ready else {"Retry-After": "5"})


_seen_queue_labels: set[tuple[str, str]] = set()


def may_scrape() -> bool:
    """METRICS_TOKEN as bearer, or a client in the allowed networks (client_ip: behind a
    trusted proxy, the address it forwarded)."""
    settings = state().settings
    if settings.METRICS_TOKEN:
        given = (request_header("authorization") or "").encode()
        if hmac.compare_digest(given, f"Bearer {settings.METRICS_TOKEN}".encode()):
            return True
    networks = settings.metrics_networks
    if networks is None:
        return True
    try:
        address = ipaddress.ip_address(client_ip())
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)


async def metrics_view() -> Response:
    """Prometheus text; gauges that describe shared state are refreshed at scrape time."""
    if not may_scrape():  # answered as if there were none, as with METRICS_ENABLED=false
        raise NotFound("not found")
    st = state()
    if st.pool is not None:
        pool = st.pool
        size, idle = pool.get_size(), pool.get_idle_size()
        metrics.DB_POOL_CONNECTIONS.labels(state="in_use").set(size - idle)
        metrics.DB_POOL_CONNECTIONS.labels(state="idle").set(idle)
        metrics.DB_POOL_CONNECTIONS.labels(state="max").set(pool.get_max_size())
    if st.accounts is not None:
        try:
            async with asyncio.timeout(st.settings.HEALTH_CHECK_TIMEOUT_SECONDS):
                lengths = await st.accounts.queue_lengths()
                workers = await st.accounts.active_workers()
        except Exception as exc:
            log.warning("metrics refresh failed", error=type(exc).__name__)
        else:
            # Queue names repeat across organisations (each has "default"): sum them. Labels seen
            # before but absent now are set to 0 rather than removed, which multiprocess mode
            # could not do.
            totals: dict[tuple[str, str], int] = dict.fromkeys(_seen_queue_labels, 0)
            for name, status, count in lengths:
                queue = job_metrics.queue_label(name)
                totals[(queue, status)] = totals.get((queue, status), 0) + count
            for (queue, status), count in totals.items():
                metrics.QUEUE_LENGTH.labels(queue=queue, status=status).set(count)
            _seen_queue_labels.update(totals)
            metrics.WORKER_ACTIVE_COUNT.set(workers)
    if st.guard is not None:
        await _redis_probe(min(1.0, st.settings.HEALTH_CHECK_TIMEOUT_SECONDS))
    # Off the event loop: a large registry took 0.46 s to render, and /health waited behind it.
    body, content_type = await asyncio.to_thread(metrics_exposition)
    return Response(body, status=200, content_type=content_type)


_openapi_cache: bytes | None = None


@blueprint.get("/openapi.json")
async def openapi() -> Response:
    global _openapi_cache
    if _openapi_cache is None:
        resource = resources.files("reference_server").joinpath("openapi.json")
        if not resource.is_file():
            raise NotFound("no OpenAPI document is shipped with this build")
        _openapi_cache = resource.read_bytes()
    return Response(_openapi_cache, status=200, content_type="application/json")
