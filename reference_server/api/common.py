"""What every blueprint shares: the app state, envelopes, body parsing and the auth decorator."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import orjson
import pydantic
import structlog
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict
from quart import Response, current_app, g, request

from reference_server import answers
from reference_server.exceptions import (
    ApiError,
    AuthenticationFailed,
    UnsupportedMediaType,
    ValidationFailed,
)
from reference_server.security import (
    Principal,
    TokenType,
    hash_api_key,
    looks_like_api_key,
)

if TYPE_CHECKING:
    import asyncpg
    import redis.asyncio

    from reference_server.accounts import AccountStore
    from reference_server.audit import AuditEntry
    from reference_server.config import Settings
    from reference_server.engine import Engine
    from reference_server.models import Job
    from reference_server.ratelimit import (
        LoginThrottle,
        RateLimiter,
        RedisGuard,
        RefreshTokenRegistry,
    )
    from reference_server.security import TokenService
    from reference_server.slots import LongPolls

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)


@dataclass(kw_only=True)
class AppState:
    """Per-process resources, opened in the app's lifespan."""

    settings: Settings
    tokens: TokenService
    pool: asyncpg.Pool | None = None
    redis: redis.asyncio.Redis | None = None
    guard: RedisGuard | None = None
    limiter: RateLimiter | None = None
    login_throttle: LoginThrottle | None = None
    refresh_tokens: RefreshTokenRegistry | None = None
    accounts: AccountStore | None = None
    engine: Engine | None = None
    long_polls: LongPolls | None = None
    shutting_down: bool = False
    engine_stop: asyncio.Task[None] | None = None
    #: Keeps refresh_tokens' copy of the revoked families in step with Redis.
    revocations_sync: asyncio.Task[None] | None = None
    #: The per-request log lines' logger, bound once for this app's logging configuration (the
    #: lazy proxy would rebuild a bound logger on every call).
    http_log: Any = None


def state() -> AppState:
    value: AppState = current_app.extensions["taskforge"]
    return value


def engine() -> Engine:
    eng = state().engine
    assert eng is not None, "engine used outside the app's lifespan"
    return eng


def accounts() -> AccountStore:
    store = state().accounts
    assert store is not None, "accounts used outside the app's lifespan"
    return store


def request_id() -> str:
    return str(getattr(g, "request_id", "") or "")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, default=str),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def ok(data: Any, status: int = 200, message: str | None = None) -> Response:
    """The success envelope of the contract."""
    return json_response(answers.ok_body(data, request_id(), message), status)


def stored_job(job: Job, status: int) -> Response:
    """The answer for a job committed with its audit row: never an error (stored_job_body)."""
    return Response(
        answers.stored_job_body(job, request_id()), status=status, content_type="application/json"
    )


def no_content() -> Response:
    return Response(b"", status=204)


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return answers.error_body(code, message, details, request_id())


def _integral(value: Any) -> Any:
    # JSON Schema counts 2.0 as an integer; strict mode alone would refuse it ("2" stays refused).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _storable(value: Any, depth: int = 0) -> None:
    """Refuse what PostgreSQL's JSONB or our encoder cannot hold, as a validation error."""
    if depth > 64:
        raise ValueError("nested too deeply (over 64 levels)")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("strings must not contain U+0000")
    elif isinstance(value, bool):
        return
    elif isinstance(value, int | float):
        # The document bounds every number: a whole float such as 1e30 is an integer to JSON
        # Schema, and beyond 64 bits our encoder could not write it back.
        if not -(2**63) <= value < 2**64:
            raise ValueError("numbers must lie within [-2^63, 2^64)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key, depth + 1)
            _storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _storable(item, depth + 1)


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    if value:  # `{}` is the commonest payload and holds nothing to check
        _storable(value)
    return value


#: An integer field that takes 3 and 3.0 but not "3".
JsonInt = Annotated[int, BeforeValidator(_integral)]
#: Any JSON object that PostgreSQL can store (no NUL characters, integers within 64 bits).
JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]


class RequestModel(BaseModel):
    """Strict request bodies: no type coercion, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _field_errors(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        details.append({"field": loc, "message": err["msg"], "type": err["type"]})
    return details


def _is_json(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


async def parse_body(model: type[M]) -> M:
    """The request's JSON body validated against model; 415, 413 or 400 otherwise."""
    raw = await request.get_data(as_text=False)
    if not _is_json(request_header("content-type") or ""):
        raise UnsupportedMediaType("the body must be JSON (Content-Type: application/json)")
    try:
        return model.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        raise ValidationFailed("request validation failed", details=_field_errors(exc)) from None


def parse_query(model: type[M]) -> M:
    """Query parameters validated against model (lax: they are strings on the wire)."""
    # An empty value (`?status=`) is a value, and an invalid one: it is refused, not ignored.
    values = dict(request.args.items())
    try:
        return model.model_validate(values, strict=False)
    except pydantic.ValidationError as exc:
        raise ValidationFailed("invalid query parameters", details=_field_errors(exc)) from None


def request_header(name: str) -> str | None:
    """A request header by its lower-case name; the first one when repeated, as werkzeug's get
    (X-Forwarded-For: all its lines joined).

    werkzeug builds an HTTP exception for every absent header it is asked for (X-API-Key,
    Origin, X-Request-ID are absent from most requests): one pass over the headers instead.
    """
    found: dict[str, str] | None = g.get("_request_headers")
    if found is None:
        found = {}
        for key, value in request.headers.items():
            lower = key.lower()
            if lower == "x-forwarded-for" and lower in found:
                # Every line counts, in order (RFC 9110 5.3): a proxy may append its own line,
                # and the client wrote the first one.
                found[lower] = f"{found[lower]}, {value}"
            else:
                found.setdefault(lower, value)
        g._request_headers = found
    return found.get(name)


@functools.lru_cache(maxsize=8)
def _networks(
    cidrs: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in cidrs)


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def client_ip() -> str:
    """The client's address (see resolve_client_ip), worked out once per request."""
    known: str | None = g.get("_client_ip")
    if known is None:
        known = g._client_ip = resolve_client_ip(
            request.remote_addr,
            request_header("x-forwarded-for"),
            state().settings.TRUSTED_PROXIES,
        )
    return known


def resolve_client_ip(peer_addr: str | None, forwarded_for: str | None, proxies: list[str]) -> str:
    """The peer's address; behind a TRUSTED_PROXIES proxy, the one it forwarded.

    X-Forwarded-For is read from the right, skipping trusted hops, so a client cannot choose its
    own address by sending the header itself.
    """
    return _resolve_client_ip(peer_addr, forwarded_for, tuple(proxies))


#: Clients are few next to requests; parsing the addresses was 7% of a submit's CPU.
@functools.lru_cache(maxsize=4096)
def _resolve_client_ip(
    peer_addr: str | None, forwarded_for: str | None, proxies: tuple[str, ...]
) -> str:
    peer = _address(peer_addr or "")
    if peer is None:
        return "unknown"
    trusted = _networks(proxies)

    def is_trusted(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(addr.version == net.version and addr in net for net in trusted)

    if not trusted or not is_trusted(peer):
        return str(peer)
    hops = [h for h in (forwarded_for or "").split(",") if h.strip()]
    for hop in reversed(hops):
        addr = _address(hop)
        if addr is None:
            break
        if not is_trusted(addr):
            return str(addr)
        peer = addr
    return str(peer)


def _bearer(header: str | None) -> str | None:
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthenticationFailed("malformed Authorization header")
    return value.strip()


async def authenticate() -> Principal:
    """The caller of this request (see authenticate_credentials)."""
    return await authenticate_credentials(
        state(), request_header("authorization"), request_header("x-api-key")
    )


async def authenticate_credentials(
    st: AppState, authorization: str | None, x_api_key: str | None
) -> Principal:
    """The caller, from `Authorization: Bearer <jwt|tf_key>` or `X-API-Key: tf_...`."""
    api_key = x_api_key
    token = _bearer(authorization)
    if token is not None and token.startswith("tf_"):
        api_key, token = token, None
    if api_key is not None:
        if not looks_like_api_key(api_key):
            raise AuthenticationFailed("invalid API key")
        assert st.accounts is not None, "accounts used outside the app's lifespan"
        found = await st.accounts.find_api_key(hash_api_key(api_key))
        if found is None:
            raise AuthenticationFailed("invalid API key")
        return found
    if token is None:
        raise AuthenticationFailed("missing credentials")
    claims = st.tokens.verify(token, TokenType.ACCESS)
    # A reused refresh token revoked its family: the access tokens issued from it go too. From
    # memory (synced from Redis each second), so a request costs no round trip for it.
    if st.refresh_tokens is not None and st.refresh_tokens.access_revoked(claims.family):
        raise AuthenticationFailed("token revoked")
    return Principal(
        kind="user",
        user_id=claims.user_id,
        organization_id=claims.organization_id,
        permissions=claims.permissions,
        credential_id=claims.jti,
        expires_at=claims.expires_at,
    )


async def rate_limit(principal: Principal | None) -> None:
    limiter = state().limiter
    if limiter is None:
        return
    keys = [f"ip:{client_ip()}"]
    if principal is not None:
        keys.insert(0, principal.rate_key)
    result = await limiter.hit(*keys)
    if result is not None:
        g.rate_limit_headers = result.headers()


def require(
    permission: str | None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Authenticate, check the permission and count the request against the rate limits."""

    def decorator(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(view)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                principal = await authenticate()
            except ApiError:
                # Failed attempts count against the client's address: no free guessing of keys.
                await rate_limit(None)
                raise
            g.principal = principal
            structlog.contextvars.bind_contextvars(
                user_id=str(principal.user_id), organization_id=str(principal.organization_id)
            )
            await rate_limit(principal)
            if permission is not None:
                principal.require(permission)
            return await view(*args, **kwargs)

        return wrapper

    return decorator


def principal() -> Principal:
    value: Principal = g.principal
    return value


def request_audit() -> AuditEntry:
    """This request's audit row, for a writer that commits it with the change (the engine fills
    in target and status); the view then sets g.audit_written so the after-hook does not."""
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    return answers.audit_entry(
        principal=principal(),
        fallback_org=None,
        fallback_actor="anonymous",
        method=request.method,
        route=rule,
        target=None,
        client_ip=client_ip(),
        request_id=request_id(),
        status=0,
    )


def set_audit_target(target: object) -> None:
    """What the mutating call acted on, for its audit row (ids and names only)."""
    g.audit_target = str(target)
