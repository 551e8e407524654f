"""POST /api/v1/jobs answered beside Quart: the hottest call without Quart's request machinery.

An empty Quart endpoint costs more than the whole submit does here (request and app contexts,
routing, before/after hooks, the Response object). This ASGI middleware takes a submit only when it
is the plain, valid kind: a JSON body within MAX_BODY_BYTES, a known caller allowed to write jobs,
a body that validates. Anything else (a preflight, a bad token, a body to refuse, a slow upload)
goes to Quart untouched, with the body handed on, before anything has been counted or written, so
every such refusal is Quart's own. From the rate limit on, the fast path answers itself, with the
functions Quart's hooks use (answers): same envelope, headers, audit row, log line and duration
metric. tests/server/test_submit_fast_path.py sends the same requests both ways and compares.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
import pydantic
import structlog

from reference_server import answers
from reference_server.api.common import authenticate_credentials, resolve_client_ip
from reference_server.api.jobs import SubmitJobRequest
from reference_server.audit import AuditEntry, with_outcome
from reference_server.dbpool import database_unavailable
from reference_server.exceptions import ApiError
from reference_server.group_commit import GroupCommit, Pending, SubmitItem
from reference_server.models import Job, JobSpec
from reference_server.ratelimit import RateLimitState
from reference_server.security import Permission, Principal

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from quart import Quart

    from reference_server.api.common import AppState

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]
    ASGIApp = Callable[..., Awaitable[None]]

PATH = answers.API_PREFIX + "/jobs"
ROUTE = PATH  # the route label of Quart's rule for this path
#: Request headers the fast path reads; the first of repeated ones counts, as in Quart
#: (X-Forwarded-For: all lines, joined).
_WANTED = frozenset(
    {
        b"authorization",
        b"x-api-key",
        b"content-type",
        b"content-length",
        b"origin",
        b"x-request-id",
        b"x-forwarded-for",
    }
)
_JSON = b"application/json"
#: Batches waiting on Redis or PostgreSQL at once. Each spends most of its time waiting; with two
#: the server sat idle an eighth of the time at 32 connections, with four the waits overlap
#: (paired benchmark rounds: median ratio 0.61-0.68 with two, 0.71-0.74 with four).
BATCHES_IN_FLIGHT = 4
#: Origins whose encoded response headers are kept (clients choose the Origin they send).
FIXED_HEADERS_KEPT = 64
#: Quart's BODY_TIMEOUT for the rest of a body that did not come in one piece.
BODY_TIMEOUT_SECONDS = 30


class SubmitFastPath:
    """ASGI middleware in front of Quart's asgi_app (installed by create_app)."""

    def __init__(self, app: Quart, quart_asgi: ASGIApp) -> None:
        self._app = app
        self._quart = quart_asgi
        self.answered = 0  # submits answered here rather than by Quart (tests, debugging)
        self._encoded: dict[str | None, list[tuple[bytes, bytes]]] = {}
        self._batcher: GroupCommit[_Submit, _Outcome] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            return await self._quart(scope, receive, send)
        st: AppState = self._app.extensions["taskforge"]
        if st.engine is None or st.limiter is None or st.accounts is None:
            return await self._quart(scope, receive, send)  # outside the lifespan (tests)
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in _WANTED:
                if name not in headers:
                    headers[name] = value
                elif name == b"x-forwarded-for":  # every line counts, as in request_header
                    headers[name] += b", " + value
        limit = st.settings.MAX_BODY_BYTES
        declared = _declared_length(headers)
        if (declared is not None and declared > limit) or not _is_json(
            headers.get(b"content-type", b"")
        ):
            return await self._quart(scope, receive, send)
        started = time.perf_counter()
        text = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()}
        try:
            # Who is asking first, as Quart's views do: a refused caller's body is never read.
            principal = await authenticate_credentials(
                st, text.get("authorization"), text.get("x-api-key")
            )
            principal.require(Permission.JOB_WRITE)
        except ApiError:
            return await self._quart(scope, receive, send)  # Quart refuses it, counting it
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            # An API key is looked up in the database: when that waited out its bound, this is
            # the answer (503), not Quart's second lookup and wait.
            self.answered += 1
            request_id = answers.request_id_for(text.get("x-request-id"))
            reply = answers.error_reply(exc)
            content = orjson.dumps(reply.body(request_id), default=str)
            await self._respond(st, send, text, request_id, reply.status, content, reply.headers,
                                {}, started, {"request_id": request_id})
            return None
        read = await _read_body(receive, limit)
        if read is None:
            return None  # the client went away
        body, whole = read
        if not whole or (declared is not None and len(body) != declared):
            # Too slow, too long, or not the declared length: Quart's body handling decides.
            return await self._quart(scope, _replay(body, receive, more=not whole), send)
        try:
            job_request = SubmitJobRequest.model_validate_json(body)
        except pydantic.ValidationError:
            # Quart refuses it, counting it where it counts refusals; nothing happened here yet.
            return await self._quart(scope, _replay(body, receive), send)
        await self._submit(st, scope, text, principal, job_request, started, send)
        return None

    async def _submit(
        self,
        st: AppState,
        scope: Scope,
        text: dict[str, str],
        principal: Principal,
        job_request: SubmitJobRequest,
        started: float,
        send: Send,
    ) -> None:
        self.answered += 1
        request_id = answers.request_id_for(text.get("x-request-id"))
        # The caller's ids go on this request's log lines; bound as context only when an error is
        # logged, passed to the one request line otherwise (binding is a third of a log line).
        context = {
            "request_id": request_id,
            "user_id": str(principal.user_id),
            "organization_id": str(principal.organization_id),
        }
        client = scope.get("client")
        ip = resolve_client_ip(
            client[0] if client else None,
            text.get("x-forwarded-for"),
            st.settings.TRUSTED_PROXIES,
        )
        assert st.limiter is not None and st.engine is not None and st.accounts is not None
        rate_headers: dict[str, str] = {}
        extra: dict[str, str] = {}
        audit = answers.audit_entry(
            principal=principal,
            fallback_org=None,
            fallback_actor="anonymous",
            method="POST",
            route=ROUTE,
            target=None,
            client_ip=ip,
            request_id=request_id,
            status=0,
        )
        audit_written = False
        try:
            spec = job_request.spec()
            if spec.idempotency_key is None:
                # Rate limit and insert of concurrent submits in one batch: one wait each.
                limits, outcome = await self._batches(st).run(
                    _Submit(principal.rate_key, f"ip:{ip}", principal.organization_id, spec, audit)
                )
                if limits is not None:
                    rate_headers = limits.headers()
                if isinstance(outcome, Exception):
                    raise outcome
                job, created = outcome, True
            else:
                limits = await st.limiter.hit(principal.rate_key, f"ip:{ip}")
                if limits is not None:
                    rate_headers = limits.headers()
                job, created = await st.engine.submit(principal.organization_id, spec, audit=audit)
            audit_written = True  # committed with the job: from here on the answer says so
            status = 201 if created else 200
            content = answers.stored_job_body(job, request_id)
        except Exception as exc:
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(**context)
            reply = answers.error_reply(exc)
            status, extra = reply.status, reply.headers
            content = orjson.dumps(reply.body(request_id), default=str)
        if not audit_written and answers.audited("POST", PATH, status):
            await answers.write_audit(
                st.accounts, with_outcome(audit, target=None, status_code=status)
            )
        await self._respond(
            st, send, text, request_id, status, content, extra, rate_headers, started, context
        )

    async def _respond(
        self,
        st: AppState,
        send: Send,
        text: dict[str, str],
        request_id: str,
        status: int,
        content: bytes,
        extra: dict[str, str],
        rate_headers: dict[str, str],
        started: float,
        context: dict[str, str],
    ) -> None:
        """The answer as Quart's hooks give it: headers, duration metric, log line."""
        response_headers = [
            (b"content-type", _JSON),
            (b"content-length", str(len(content)).encode()),
            (b"x-request-id", request_id.encode("latin-1")),
            *((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()),
        ]
        response_headers.extend(
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in rate_headers.items()
            if k not in extra  # a 429's own rate-limit headers win
        )
        response_headers.extend(self._fixed_headers(st, text.get("origin")))
        elapsed = answers.elapsed_since(started)
        answers.observe_duration("POST", ROUTE, status, elapsed)
        answers.log_request(
            st.http_log,
            method="POST",
            path=PATH,
            route=ROUTE,
            status=status,
            seconds=elapsed,
            **context,
        )
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})

    def _batches(self, st: AppState) -> GroupCommit[_Submit, _Outcome]:
        if self._batcher is None:

            async def write(batch: list[Pending[_Submit, _Outcome]]) -> None:
                await _limit_and_insert(st, batch)

            # A hung database fails the submits queued behind a stuck batch at once (503).
            self._batcher = GroupCommit(
                write, max_writers=BATCHES_IN_FLIGHT, fails_queue=database_unavailable
            )
        return self._batcher

    def _fixed_headers(self, st: AppState, origin: str | None) -> list[tuple[bytes, bytes]]:
        """answers.fixed_headers for this origin, encoded once (settings do not change)."""
        found = self._encoded.get(origin)
        if found is None:
            found = [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in answers.fixed_headers(st.settings, origin, has_cache_control=False)
            ]
            if len(self._encoded) < FIXED_HEADERS_KEPT:  # a client chooses its Origin
                self._encoded[origin] = found
        return found


@dataclass(frozen=True, slots=True)
class _Submit:
    """One submit of a batch: whom its rate limits count, and what it inserts."""

    rate_key: str
    ip_key: str
    org_id: UUID
    spec: JobSpec
    audit: AuditEntry


#: A batched submit's rate-limit state (None: limiting off or Redis down, fail-open) and its job,
#: or why it has none (RateLimited, NotFound, a database error).
_Outcome = tuple[RateLimitState | None, Job | Exception]


async def _limit_and_insert(st: AppState, batch: list[Pending[_Submit, _Outcome]]) -> None:
    """The batch's rate-limit checks in one Redis call, then the admitted ones' jobs and audit
    rows in one statement, each request settled once (one wait and wake-up per request, not two
    group commits in turn)."""
    assert st.limiter is not None and st.engine is not None
    verdicts = await st.limiter.hit_each([(p.item.rate_key, p.item.ip_key) for p in batch])
    admitted: list[tuple[Pending[_Submit, _Outcome], RateLimitState | None]] = []
    for pending, verdict in zip(batch, verdicts, strict=True):
        if isinstance(verdict, Exception):
            pending.resolve((None, verdict))
        else:
            admitted.append((pending, verdict))
    if not admitted:
        return
    outcomes = await st.engine.submit_each(
        [SubmitItem(p.item.org_id, p.item.spec, p.item.audit) for p, _ in admitted]
    )
    for (pending, verdict), outcome in zip(admitted, outcomes, strict=True):
        pending.resolve((verdict, outcome))


def _declared_length(headers: dict[bytes, bytes]) -> int | None:
    """Content-Length when it is given and a number; None when absent (chunked, HTTP/2)."""
    raw = headers.get(b"content-length")
    return int(raw) if raw is not None and raw.isdigit() else None


def _is_json(content_type: bytes) -> bool:
    # The common spellings only; the rest (+json types, parameters in odd case) go through Quart.
    mime = content_type.split(b";", 1)[0].strip().lower()
    return mime == _JSON


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, bool] | None:
    """(what came, whether it is all of a body within `limit`); None when the client went away."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body, len(body) <= limit
    chunks = [body]
    size = len(body)
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            while message.get("more_body", False) and size <= limit:
                message = await receive()
                if message["type"] != "http.request":
                    return None
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
    except TimeoutError:
        return b"".join(chunks), False
    return b"".join(chunks), size <= limit and not message.get("more_body", False)


def _replay(body: bytes, receive: Receive, *, more: bool = False) -> Receive:
    """A receive that hands on what was already read, then listens to the client again."""
    given = False

    async def again() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return again
