"""A small, independent implementation of the TaskForge API contract, with flaws on switches.

The live checks are worth what they catch on deployments the project did not write. This app
shares no code with reference_server: it keeps its state in memory, signs tokens with PyJWT, and
answers the contract's envelopes. `FLAWS` (comma-separated, from the environment) turns on one
defect per class the live checks look for; with none on it is a correct (if small) server.
Served by a real server process (Granian, TLS) from `flawed_support.py`.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import hashlib
import json
import os
import re
import secrets
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: Every flaw this app can have, one per class of the live checks.
KNOWN_FLAWS = frozenset({
    "alg-none", "sig-stripped", "claims-tampered", "wrong-key", "alg-any-hs", "expired-accepted",
    "refresh-as-access", "cross-tenant-read", "cross-tenant-write", "cross-tenant-lease",
    "member-writes", "traceback", "no-media-type", "no-body-limit", "html-404",
    "version-banner", "weak-headers", "metrics-public", "lockout-race", "dates-unbounded",
    "cross-tenant-list", "values-unbounded", "request-id-not-echoed",
    "ratelimit-unenforced", "no-token-accepted", "garbage-accepted",
})
#: ratelimit-unenforced: X-RateLimit headers count down from this, and no 429 ever comes.
ADVERTISED_LIMIT = int(os.environ.get("FLAWED_RATE_LIMIT") or "600")
SERVED = [0]
LOG_FILE = os.environ.get("FLAWED_LOG_FILE")
#: Behaviour the contract allows (no flaw): lists as bare arrays, registration closed to new
#: organisations once two exist.
KNOWN_VARIANTS = frozenset({"bare-lists", "registration-closed"})
VARIANTS = frozenset(v for v in os.environ.get("VARIANTS", "").split(",") if v)
if VARIANTS - KNOWN_VARIANTS:
    raise SystemExit(f"unknown variants: {sorted(VARIANTS - KNOWN_VARIANTS)}")
FLAWS = frozenset(f for f in os.environ.get("FLAWS", "").split(",") if f)
if FLAWS - KNOWN_FLAWS:
    raise SystemExit(f"unknown flaws: {sorted(FLAWS - KNOWN_FLAWS)}")
# Random when unset: importing the module (for KNOWN_FLAWS) must not need the server's settings.
JWT_SECRET = os.environ.get("JWT_SECRET") or secrets.token_urlsafe(32)
JWT_REFRESH_SECRET = os.environ.get("JWT_REFRESH_SECRET") or secrets.token_urlsafe(32)
MAX_BODY = 1024 * 1024
ADMIN = ("queue:read", "queue:write", "job:read", "job:write", "worker:read", "worker:write",
         "api_key:write")
LOCKOUT_ATTEMPTS = 5


#: This request's id: the client's X-Request-ID echoed, else a new one.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def flawed(name: str) -> bool:
    return name in FLAWS


def listing(key: str, items: list[Any], **extra: Any) -> Any:
    """A list response: wrapped as {key: [...]} or, with the bare-lists variant, the array."""
    return items if "bare-lists" in VARIANTS else {key: items, **extra}


def now() -> datetime:
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def not_found() -> ApiError:
    return ApiError(404, "RESOURCE_NOT_FOUND", "not found")


class Store:
    """Everything the service knows, in memory (one process)."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}  # email -> user
        self.failures: dict[str, list[float]] = {}
        self.queues: dict[tuple[str, str], dict[str, Any]] = {}  # (org, name) -> queue
        self.jobs: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, dict[str, Any]] = {}  # id -> key record
        self.workers: dict[str, dict[str, Any]] = {}
        self.revoked: set[str] = set()
        self.seen_signatures: set[str] = set()


STORE = Store()


# --- identity -----------------------------------------------------------------------------------


def issue(user: dict[str, Any]) -> dict[str, Any]:
    stamp = int(time.time())
    base = {"sub": user["id"], "org": user["org"], "perms": list(user["perms"]), "iat": stamp}
    access = jwt.encode({**base, "exp": stamp + 3600, "jti": str(uuid.uuid4()), "typ": "access"},
                        JWT_SECRET, algorithm="HS256")
    refresh = jwt.encode(
        {**base, "exp": stamp + 7 * 86400, "jti": str(uuid.uuid4()), "typ": "refresh"},
        JWT_REFRESH_SECRET, algorithm="HS256",
    )
    STORE.seen_signatures.add(access.rsplit(".", 1)[1])
    return {"access_token": access, "refresh_token": refresh, "token_type": "Bearer",
            "expires_in": 3600}


def _unverified(token: str) -> dict[str, Any]:
    try:
        return dict(jwt.decode(token, options={"verify_signature": False}))
    except jwt.PyJWTError:
        raise ApiError(401, "AUTH_001", "invalid token") from None


def first_user() -> dict[str, Any]:
    """Whom a broken server falls back to: the first account (an admin), or an unknown one."""
    user = next(iter(STORE.users.values()), None)
    if user is None:
        raise ApiError(401, "AUTH_001", "missing credentials")
    return {"user": user["id"], "org": user["org"], "perms": set(user["perms"]),
            "credential": f"user:{user['id']}"}


def readable_header(token: str) -> bool:
    """Whether the token's first part is base64 of a JSON object (a JWT header at all)."""
    head = token.split(".", 1)[0]
    try:
        return isinstance(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))),
                          dict)
    except (ValueError, UnicodeDecodeError):
        return False


def decode_access(token: str) -> dict[str, Any]:
    """The claims of an access token, as the switches let a broken verifier accept it."""
    parts = token.split(".")
    if len(parts) == 3:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise ApiError(401, "AUTH_001", "invalid token") from None
        alg = str(header.get("alg", ""))
        if flawed("alg-none") and alg.lower() == "none":
            return _unverified(token)
        if flawed("sig-stripped") and parts[2] == "":
            return _unverified(token)
        if flawed("claims-tampered") and parts[2] in STORE.seen_signatures:
            return _unverified(token)  # "seen this signature before": the payload is not checked
        if flawed("wrong-key") and alg == "HS256" and parts[2]:
            return _unverified(token)
    elif flawed("sig-stripped") and len(parts) == 2:
        return _unverified(token + ".")
    algorithms = ["HS256", "HS384", "HS512"] if flawed("alg-any-hs") else ["HS256"]
    options = {"verify_exp": not flawed("expired-accepted")}
    try:
        return dict(jwt.decode(token, JWT_SECRET, algorithms=algorithms, options=options))
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "AUTH_002", "token expired") from None
    except jwt.PyJWTError:
        if flawed("refresh-as-access"):
            try:
                return dict(jwt.decode(token, JWT_REFRESH_SECRET, algorithms=["HS256"]))
            except jwt.PyJWTError:
                pass
        raise ApiError(401, "AUTH_001", "invalid token") from None


def principal(headers: dict[str, str]) -> dict[str, Any]:
    key = headers.get("x-api-key")
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        token = auth[7:].strip()
        if token.startswith("tf_"):
            key = token
        elif flawed("garbage-accepted") and not readable_header(token):
            return first_user()  # a parse failure taken as "no claims to check"
        else:
            claims = decode_access(token)
            if claims.get("typ", "access") != "access" and not flawed("refresh-as-access"):
                raise ApiError(401, "AUTH_001", "not an access token")
            return {"user": claims.get("sub"), "org": claims.get("org"),
                    "perms": set(claims.get("perms") or ()),
                    "credential": f"user:{claims.get('sub')}"}
    if key:
        digest = hashlib.sha256(key.encode()).hexdigest()
        for record in STORE.keys.values():
            if record["hash"] == digest:
                return {"user": record["user"], "org": record["org"],
                        "perms": set(record["permissions"]), "credential": f"key:{record['id']}"}
        raise ApiError(401, "AUTH_001", "invalid API key")
    if flawed("no-token-accepted"):
        return first_user()  # an authentication middleware left off this route
    raise ApiError(401, "AUTH_001", "missing credentials")


def require(who: dict[str, Any], permission: str) -> None:
    writes = permission in {"queue:write", "worker:write", "api_key:write"}
    if permission not in who["perms"] and not (flawed("member-writes") and writes):
        raise ApiError(403, "PERM_001", f"missing permission {permission}")


# --- objects ------------------------------------------------------------------------------------


def queue_of(who: dict[str, Any], name: str, *, cross: bool) -> dict[str, Any]:
    queue = STORE.queues.get((who["org"], name))
    if queue is None and cross:
        queue = next((q for (org, n), q in STORE.queues.items() if n == name), None)
    if queue is None:
        raise not_found()
    return queue


def job_of(who: dict[str, Any], job_id: str, *, cross: bool) -> dict[str, Any]:
    job = STORE.jobs.get(job_id)
    if job is None or (job["org"] != who["org"] and not cross):
        raise not_found()
    return job


def new_queue(org: str, name: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    stamp = iso(now())
    queue = {"id": str(uuid.uuid4()), "org": org, "name": name,
             "description": (body or {}).get("description"), "priority": 0,
             "settings": {"max_attempts": 3, "timeout_seconds": 300}, "paused": False,
             "created_at": stamp, "updated_at": stamp}
    STORE.queues[(org, name)] = queue
    return queue


def queue_api(queue: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in queue.items() if k != "org"}


def job_api(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k != "org"}


def parse_when(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, "VALIDATION_001", "scheduled_for must be a string")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "VALIDATION_001", "scheduled_for is not RFC 3339") from None
    if when.tzinfo is None:
        raise ApiError(400, "VALIDATION_001", "scheduled_for needs an offset")
    if flawed("dates-unbounded"):
        return value  # stored as given; the UTC conversion below is what breaks for year 1
    try:
        return iso(when.astimezone(UTC))
    except OverflowError:
        raise ApiError(400, "VALIDATION_001", "scheduled_for out of range") from None


def submit(who: dict[str, Any], body: dict[str, Any], *, store: bool = True) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "VALIDATION_001", "body must be an object")
    name, job_type = body.get("queue_name"), body.get("job_type")
    priority = body.get("priority", 0)
    if not isinstance(name, str) or not isinstance(job_type, str) or not 1 <= len(job_type) <= 100:
        raise ApiError(400, "VALIDATION_001", "queue_name and job_type are required")
    attempts = body.get("max_attempts", 3)
    if not flawed("values-unbounded"):
        if not isinstance(priority, int) or not 0 <= priority <= 9:
            raise ApiError(400, "VALIDATION_001", "priority must be 0-9")
        if not isinstance(attempts, int) or not 1 <= attempts <= 10:
            raise ApiError(400, "VALIDATION_001", "max_attempts must be 1-10")
    if not isinstance(body.get("payload", {}), dict):
        raise ApiError(400, "VALIDATION_001", "payload must be an object")
    scheduled = parse_when(body.get("scheduled_for"))
    queue = queue_of(who, name, cross=False)
    stamp = iso(now())
    job = {"id": str(uuid.uuid4()), "org": who["org"], "queue_name": queue["name"],
           "job_type": job_type, "payload": body.get("payload", {}), "priority": priority,
           "status": "scheduled" if scheduled else "pending", "attempt_count": 0,
           "max_attempts": attempts, "scheduled_for": scheduled,
           "lease_expires_at": None, "worker_id": None, "output": None, "error_message": None,
           "created_at": stamp, "updated_at": stamp, "completed_at": None}
    if not store:
        return job
    STORE.jobs[job["id"]] = job
    if job_type == "test_job" and not scheduled:  # a built-in type: runs at once
        job.update(status="succeeded", attempt_count=1, completed_at=stamp, output={"ok": True})
    return job


# --- routes -------------------------------------------------------------------------------------

Handler = Callable[..., Awaitable[tuple[int, Any]]]
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append((method, re.compile(f"^{pattern}$"), handler))
        return handler

    return register


@route("POST", "/api/v1/auth/register")
async def register(req: Request) -> tuple[int, Any]:
    body = req.json()
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str) or len(password) < 8:
        raise ApiError(400, "VALIDATION_001", "email and a password of 8+ characters")
    if email in STORE.users:
        raise ApiError(409, "RESOURCE_CONFLICT", "email taken")
    if "registration-closed" in VARIANTS and len(STORE.users) >= 2:
        raise ApiError(403, "PERM_001", "registration is closed")
    org = str(uuid.uuid4())
    user = {"id": str(uuid.uuid4()), "org": org, "email": email, "perms": ADMIN,
            "hash": hashlib.sha256(password.encode()).hexdigest()}
    STORE.users[email] = user
    new_queue(org, "default")
    return 201, {"user_id": user["id"], "organization_id": org}


@route("POST", "/api/v1/auth/login")
async def login(req: Request) -> tuple[int, Any]:
    body = req.json()
    email, password = str(body.get("email")), str(body.get("password"))
    window = [t for t in STORE.failures.get(email, []) if t > time.time() - 900]
    if len(window) >= LOCKOUT_ATTEMPTS:
        raise ApiError(429, "RATE_LIMIT_EXCEEDED", "too many failed logins")
    if not flawed("lockout-race"):
        window.append(time.time())  # the attempt is taken before the password is checked
        STORE.failures[email] = window
    await asyncio.sleep(0.05)  # the password hash's cost
    user = STORE.users.get(email)
    if user is None or user["hash"] != hashlib.sha256(password.encode()).hexdigest():
        if flawed("lockout-race"):
            STORE.failures.setdefault(email, []).append(time.time())
        raise ApiError(401, "AUTH_001", "wrong email or password")
    if not flawed("lockout-race"):
        window.pop()
    return 200, issue(user)


@route("POST", "/api/v1/auth/refresh")
async def refresh(req: Request) -> tuple[int, Any]:
    token = str(req.json().get("refresh_token"))
    try:
        claims = jwt.decode(token, JWT_REFRESH_SECRET, algorithms=["HS256"])
    except jwt.PyJWTError:
        raise ApiError(401, "AUTH_001", "invalid refresh token") from None
    if claims.get("jti") in STORE.revoked:
        raise ApiError(401, "AUTH_001", "revoked")
    STORE.revoked.add(str(claims.get("jti")))
    user = next((u for u in STORE.users.values() if u["id"] == claims["sub"]), None)
    if user is None:
        raise ApiError(401, "AUTH_001", "unknown user")
    return 200, issue(user)


@route("GET", "/api/v1/auth/validate")
async def validate(req: Request) -> tuple[int, Any]:
    who = req.who()
    return 200, {"valid": True, "user_id": who["user"], "organization_id": who["org"],
                 "permissions": sorted(who["perms"]), "expires_at": None}


@route("POST", "/api/v1/api-keys")
async def create_key(req: Request) -> tuple[int, Any]:
    who = req.who()
    require(who, "api_key:write")
    body = req.json()
    permissions = body.get("permissions")
    if not isinstance(permissions, list) or not permissions or set(permissions) - set(ADMIN):
        raise ApiError(400, "VALIDATION_001", "permissions")
    if set(permissions) - who["perms"]:
        raise ApiError(403, "PERM_001", "cannot grant permissions you lack")
    plain = "tf_" + secrets.token_hex(16)
    record = {"id": str(uuid.uuid4()), "org": who["org"], "user": who["user"],
              "name": str(body.get("name")), "permissions": sorted(permissions),
              "hash": hashlib.sha256(plain.encode()).hexdigest(), "created_at": iso(now())}
    STORE.keys[record["id"]] = record
    return 201, {"id": record["id"], "name": record["name"], "permissions": record["permissions"],
                 "key": plain, "created_at": record["created_at"]}


@route("GET", "/api/v1/api-keys")
async def list_keys(req: Request) -> tuple[int, Any]:
    who = req.who()
    require(who, "api_key:write")
    return 200, listing("api_keys", [
        {"id": k["id"], "name": k["name"], "permissions": k["permissions"]}
        for k in STORE.keys.values() if k["org"] == who["org"]])


@route("DELETE", "/api/v1/api-keys/(?P<key_id>[^/]+)")
async def delete_key(req: Request, key_id: str) -> tuple[int, Any]:
    who = req.who()
    require(who, "api_key:write")
    record = STORE.keys.get(key_id)
    if record is None or (record["org"] != who["org"] and not flawed("cross-tenant-write")):
        raise not_found()
    del STORE.keys[key_id]
    return 204, None


@route("POST", "/api/v1/queues")
async def create_queue(req: Request) -> tuple[int, Any]:
    who = req.who()
    require(who, "queue:write")
    body = req.json()
    name = body.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", name):
        raise ApiError(400, "VALIDATION_001", "name")
    if (who["org"], name) in STORE.queues:
        raise ApiError(409, "RESOURCE_CONFLICT", "queue exists")
    return 201, queue_api(new_queue(who["org"], name, body))


@route("GET", "/api/v1/queues")
async def list_queues(req: Request) -> tuple[int, Any]:
    who = req.who()
    require(who, "queue:read")
    return 200, listing("queues", [queue_api(q) for (org, _), q in STORE.queues.items()
                                   if org == who["org"] or flawed("cross-tenant-list")])


@route("GET", "/api/v1/queues/(?P<name>[^/]+)")
async def get_queue(req: Request, name: str) -> tuple[int, Any]:
    who = req.who()
    require(who, "queue:read")
    return 200, queue_api(queue_of(who, name, cross=flawed("cross-tenant-read")))


@route("GET", "/api/v1/queues/(?P<name>[^/]+)/stats")
async def queue_stats(req: Request, name: str) -> tuple[int, Any]:
    who = req.who()
    require(who, "queue:read")
    queue = queue_of(who, name, cross=flawed("cross-tenant-read"))
    counts: dict[str, int] = {}
    for job in STORE.jobs.values():
        if job["org"] == queue["org"] and job["queue_name"] == queue["name"]:
            counts[job["status"]] = counts.get(job["status"], 0) + 1
    return 200, {"queue": queue["name"], "counts": counts}


@route("PUT", "/api/v1/queues/(?P<name>[^/]+)")
async def update_queue(req: Request, name: str) -> tuple[int, Any]:
    who = req.who()
    require(who, "queue:write")
    queue = queue_of(who, name, cross=flawed("cross-tenant-write"))
    body = req.json()
    if "description" in body:
        queue["description"] = body["description"]
    if isinstance(body.get("priority"), int):
        queue["priority"] = body["priority"]
    queue["updated_at"] = iso(now())
    return 200, queue_api(queue)


@route("DELETE", "/api/v1/queues/(?P<name>[^/]+)")
async def delete_queue(req: Request, name: str) -> tuple[int, Any]:
    who = req.who()
    require(who, "queue:write")
    queue = queue_of(who, name, cross=flawed("cross-tenant-write"))
    unfinished = [j for j in STORE.jobs.values() if j["org"] == queue["org"]
                  and j["queue_name"] == name and j["status"] in {"pending", "scheduled",
                                                                   "processing"}]
    if unfinished and not flawed("cross-tenant-write"):
        raise ApiError(409, "RESOURCE_CONFLICT", "queue holds unfinished jobs")
    del STORE.queues[(queue["org"], name)]
    return 204, None


async def _set_paused(req: Request, name: str, paused: bool) -> tuple[int, Any]:
    who = req.who()
    require(who, "queue:write")
    queue = queue_of(who, name, cross=flawed("cross-tenant-write"))
    queue["paused"] = paused
    return 200, queue_api(queue)


@route("POST", "/api/v1/queues/(?P<name>[^/]+)/pause")
async def pause_queue(req: Request, name: str) -> tuple[int, Any]:
    return await _set_paused(req, name, True)


@route("POST", "/api/v1/queues/(?P<name>[^/]+)/resume")
async def resume_queue(req: Request, name: str) -> tuple[int, Any]:
    return await _set_paused(req, name, False)


@route("POST", "/api/v1/jobs")
async def create_job(req: Request) -> tuple[int, Any]:
    who = req.who()
    require(who, "job:write")
    return 201, job_api(submit(who, req.json()))


@route("POST", "/api/v1/jobs/batch")
async def create_batch(req: Request) -> tuple[int, Any]:
    who = req.who()
    require(who, "job:write")
    items = req.json().get("jobs")
    if not isinstance(items, list) or not 1 <= len(items) <= 1000:
        raise ApiError(400, "VALIDATION_001", "jobs: 1 to 1000 items")
    for item in items:
        submit(who, item, store=False)  # all or nothing: every item validated first
    return 201, {"ids": [submit(who, item)["id"] for item in items]}


@route("GET", "/api/v1/jobs")
async def list_jobs(req: Request) -> tuple[int, Any]:
    who = req.who()
    require(who, "job:read")
    query = req.query
    cross = flawed("cross-tenant-read") and ("queue_name" in query or "job_type" in query)
    found = [j for j in STORE.jobs.values() if cross or j["org"] == who["org"]]
    for field in ("queue_name", "status", "job_type"):
        if field in query:
            found = [j for j in found if j[field] == query[field]]
    limit = min(int(query.get("limit", "20") or 20), 100)
    return 200, listing("jobs", [job_api(j) for j in found[:limit]],
                        pagination={"page": 1, "limit": limit, "total": len(found),
                                    "pages": 1 if found else 0})


@route("GET", "/api/v1/jobs/(?P<job_id>[^/]+)")
async def get_job(req: Request, job_id: str) -> tuple[int, Any]:
    who = req.who()
    require(who, "job:read")
    return 200, job_api(job_of(who, job_id, cross=flawed("cross-tenant-read")))


@route("POST", "/api/v1/jobs/(?P<job_id>[^/]+)/(?P<action>cancel|retry)")
async def change_job(req: Request, job_id: str, action: str) -> tuple[int, Any]:
    who = req.who()
    require(who, "job:write")
    job = job_of(who, job_id, cross=flawed("cross-tenant-write"))
    if action == "cancel":
        if job["status"] not in {"pending", "scheduled"}:
            raise ApiError(409, "RESOURCE_CONFLICT", "not cancellable")
        job["status"] = "cancelled"
    else:
        if job["status"] not in {"failed", "dead"}:
            raise ApiError(409, "RESOURCE_CONFLICT", "not retryable")
        job.update(status="pending", attempt_count=0)
    job["updated_at"] = iso(now())
    return 200, job_api(job)


@route("POST", "/api/v1/jobs/(?P<job_id>[^/]+)/(?P<action>complete|fail)")
async def settle_job(req: Request, job_id: str, action: str) -> tuple[int, Any]:
    who = req.who()
    require(who, "worker:write")
    job = job_of(who, job_id, cross=flawed("cross-tenant-write"))
    body = req.json()
    if job["status"] != "processing" and not flawed("cross-tenant-write"):
        raise ApiError(409, "RESOURCE_CONFLICT", "the job is not leased by this worker")
    if action == "complete":
        job.update(status="succeeded", output=body.get("output") or {}, completed_at=iso(now()))
    else:
        job.update(status="dead", error_message=str(body.get("error_message")))
    return 200, job_api(job)


@route("POST", "/api/v1/workers")
async def register_worker(req: Request) -> tuple[int, Any]:
    who = req.who()
    require(who, "worker:write")
    body = req.json()
    queues = body.get("queues")
    if not isinstance(queues, list) or not queues:
        raise ApiError(400, "VALIDATION_001", "queues")
    worker = {"id": str(uuid.uuid4()), "org": who["org"], "name": str(body.get("name")),
              "queues": queues, "credential": who["credential"],
              "heartbeat_interval_seconds": 30, "last_heartbeat_at": iso(now())}
    STORE.workers[worker["id"]] = worker
    return 201, {k: v for k, v in worker.items() if k not in {"org", "credential"}}


@route("GET", "/api/v1/workers")
async def list_workers(req: Request) -> tuple[int, Any]:
    who = req.who()
    require(who, "worker:read")
    return 200, {"workers": [{"id": w["id"], "name": w["name"], "queues": w["queues"]}
                             for w in STORE.workers.values() if w["org"] == who["org"]]}


def worker_of(who: dict[str, Any], worker_id: str) -> dict[str, Any]:
    worker = STORE.workers.get(worker_id)
    if worker is None or worker["org"] != who["org"] or worker["credential"] != who["credential"]:
        raise not_found()
    return worker


@route("POST", "/api/v1/workers/(?P<worker_id>[^/]+)/heartbeat")
async def heartbeat(req: Request, worker_id: str) -> tuple[int, Any]:
    who = req.who()
    require(who, "worker:write")
    worker = worker_of(who, worker_id)
    worker["last_heartbeat_at"] = iso(now())
    return 200, {"id": worker["id"]}


@route("POST", "/api/v1/workers/(?P<worker_id>[^/]+)/lease")
async def lease(req: Request, worker_id: str) -> tuple[int, Any]:
    who = req.who()
    require(who, "worker:write")
    worker = worker_of(who, worker_id)
    max_jobs = req.json().get("max_jobs", 1)
    taken = []
    for job in STORE.jobs.values():
        if len(taken) >= max_jobs:
            break
        same_org = job["org"] == who["org"] or flawed("cross-tenant-lease")
        if same_org and job["queue_name"] in worker["queues"] and job["status"] == "pending":
            queue = STORE.queues.get((job["org"], job["queue_name"]))
            if queue is not None and not queue["paused"]:
                lease_until = now() + timedelta(seconds=60)
                job.update(status="processing", worker_id=worker["id"],
                           attempt_count=job["attempt_count"] + 1,
                           lease_expires_at=iso(lease_until))
                taken.append(job_api(job))
    return 200, {"jobs": taken}


# --- operations ---------------------------------------------------------------------------------


def metrics_text() -> str:
    lines = [
        "# TYPE taskforge_job_submitted_total counter",
        "# TYPE taskforge_job_processed_total counter",
        "# TYPE taskforge_job_processing_duration_seconds histogram",
        "# TYPE taskforge_job_wait_duration_seconds histogram",
        "# TYPE taskforge_queue_length gauge",
        "# TYPE taskforge_worker_active_count gauge",
        f"taskforge_worker_active_count {len(STORE.workers)}",
        "# TYPE taskforge_http_request_duration_seconds histogram",
        "# TYPE taskforge_db_pool_connections gauge",
        'taskforge_db_pool_connections{state="max"} 1',
        "# TYPE taskforge_redis_up gauge",
        "taskforge_redis_up 1",
    ]
    counts: dict[tuple[str, str], int] = {}
    for job in STORE.jobs.values():
        key = (job["queue_name"], job["job_type"])
        counts[key] = counts.get(key, 0) + 1
    lines[1:1] = [f'taskforge_job_submitted_total{{queue="{q}",job_type="{t}"}} {n}'
                  for (q, t), n in sorted(counts.items())]
    return "\n".join(lines) + "\n"


class Request:
    def __init__(self, scope: Scope, body: bytes) -> None:
        self.scope = scope
        self.method = str(scope["method"])
        self.path = str(scope["path"])
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                        for k, v in scope.get("headers", [])}
        raw_query = scope.get("query_string", b"").decode()
        self.query = dict(p.split("=", 1) if "=" in p else (p, "") for p in raw_query.split("&")
                          if p)
        self.body = body

    def who(self) -> dict[str, Any]:
        return principal(self.headers)

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        kind = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json" and not flawed("no-media-type"):
            raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "send application/json")
        if flawed("traceback"):
            value = json.loads(self.body)  # a decoding error escapes to the 500 handler
        else:
            try:
                value = json.loads(self.body)
            except ValueError:
                raise ApiError(400, "VALIDATION_001", "malformed JSON body") from None
        if not isinstance(value, dict):
            raise ApiError(400, "VALIDATION_001", "body must be an object")
        return value


def security_headers() -> list[tuple[bytes, bytes]]:
    if flawed("weak-headers"):
        pairs = [("Strict-Transport-Security", "max-age=86400"),
                 ("Content-Security-Policy", "default-src 'self' 'unsafe-inline'"),
                 ("X-Frame-Options", "SAMEORIGIN"), ("Referrer-Policy", "unsafe-url")]
    else:
        pairs = [("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
                 ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
                 ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                 ("Referrer-Policy", "no-referrer")]
    if flawed("version-banner"):
        pairs += [("Server", "FlawedForge/1.4.2"), ("X-Powered-By", "Python/3.11.2")]
    return [(k.encode(), v.encode()) for k, v in pairs]


async def respond(send: Send, status: int, body: bytes, content_type: str,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type.encode()),
               (b"content-length", str(len(body)).encode()),
               (b"x-request-id", (REQUEST_ID.get() or str(uuid.uuid4())).encode()),
               *security_headers(), *(extra or [])]
    if LOG_FILE:  # one JSON line per response, under this request's id
        with open(LOG_FILE, "a", encoding="utf-8") as log:
            log.write(json.dumps({"timestamp": iso(now()), "level": "info", "message": "request",
                                  "status": status,
                                  "request_id": REQUEST_ID.get() or "unset"}) + "\n")
    if flawed("ratelimit-unenforced"):
        SERVED[0] += 1
        headers += [(b"x-ratelimit-limit", str(ADVERTISED_LIMIT).encode()),
                    (b"x-ratelimit-remaining", str(max(ADVERTISED_LIMIT - SERVED[0], 0)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def envelope(status: int, data: Any = None, error: ApiError | None = None) -> bytes:
    stamp = iso(now())
    if error is not None:
        body = {"success": False, "error": {"code": error.code, "message": error.message},
                "timestamp": stamp, "request_id": REQUEST_ID.get() or str(uuid.uuid4())}
    else:
        body = {"success": True, "data": data, "timestamp": stamp,
                "request_id": REQUEST_ID.get() or str(uuid.uuid4())}
    return json.dumps(body).encode()


async def read_body(receive: Receive, limit: int | None) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
    REQUEST_ID.set(given if given and not flawed("request-id-not-echoed") else str(uuid.uuid4()))
    if path in ("/health", "/ready"):
        body = json.dumps({"status": "ok", "checks": {"database": "ok", "redis": "ok",
                                                      "migrations": "ok"}, "version": "1.4.2"})
        await respond(send, 200, body.encode(), "application/json")
        return
    if path == "/metrics":
        if flawed("metrics-public"):
            await respond(send, 200, metrics_text().encode(), "text/plain; version=0.0.4")
        else:  # FLAWED_METRICS_STATUS: a broken metrics path (no flaw: it serves nothing)
            status = int(os.environ.get("FLAWED_METRICS_STATUS") or "404")
            error = ApiError(status, "RESOURCE_NOT_FOUND" if status == 404 else "INTERNAL_ERROR",
                             "not found" if status == 404 else "internal error")
            await respond(send, status, envelope(status, error=error), "application/json")
        return
    body = await read_body(receive, None if flawed("no-body-limit") else MAX_BODY)
    if body is None:
        error = ApiError(413, "PAYLOAD_TOO_LARGE", "body over 1 MiB")
        await respond(send, 413, envelope(413, error=error), "application/json")
        return
    request = Request(scope, body)
    try:
        for route_method, pattern, handler in ROUTES:
            match = pattern.match(path)
            if match and route_method == method:
                status, data = await handler(request, **match.groupdict())
                payload = b"" if status == 204 else envelope(status, data)
                await respond(send, status, payload, "application/json")
                return
        if flawed("html-404"):
            await respond(send, 404, b"<html><body><h1>Not Found</h1></body></html>", "text/html")
            return
        raise not_found()
    except ApiError as exc:
        await respond(send, exc.status, envelope(exc.status, error=exc), "application/json")
    except Exception as exc:  # the 500 handler; with "traceback" on it shows the stack
        shown = traceback.format_exc() if flawed("traceback") else "internal error"
        error = ApiError(500, "INTERNAL_ERROR", shown)
        if not flawed("traceback"):
            del exc
        await respond(send, 500, envelope(500, error=error), "application/json")
