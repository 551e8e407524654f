"""What Redis is for here: rate limits, login-attempt limits and refresh-token revocation.

Every call goes through RedisGuard, which remembers an outage for a moment so that a dead Redis
costs one failed connection per second, not one per request. When Redis is down, rate limiting
follows RATE_LIMIT_FAILURE_MODE (open: let requests through; closed: 503), and the
taskforge_redis_up gauge says 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import redis.exceptions

from reference_server import metrics
from reference_server.exceptions import ApiError, RateLimited, ServiceUnavailable
from reference_server.group_commit import GroupCommit, Pending
from reference_server.observability import get_logger

if TYPE_CHECKING:
    import redis.asyncio

T = TypeVar("T")
log = get_logger(__name__)

WINDOW_SECONDS = 60
LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW_SECONDS = 15 * 60
#: After a failed Redis call, skip Redis for this long before trying again.
OUTAGE_BACKOFF_SECONDS = 1.0
#: Any Redis failure (refused, timed out, out of memory, read-only replica) counts as "down":
#: Redis holds nothing that is worth failing a request over.
REDIS_ERRORS = (redis.exceptions.RedisError, OSError)


class RedisUnavailable(Exception):
    """Redis did not answer (or is known to be down for a moment)."""


class RedisGuard:
    """Runs Redis calls, tracking whether Redis is up (and the taskforge_redis_up gauge)."""

    def __init__(self, client: redis.asyncio.Redis | None) -> None:
        self.client = client
        self._down_until = 0.0
        self._reported: bool | None = None
        self._report(client is not None)

    @property
    def up(self) -> bool:
        return self.client is not None and time.monotonic() >= self._down_until

    def _report(self, up: bool) -> None:
        # Set on a change only: every rate-limited request passes here.
        if up is not self._reported:
            metrics.REDIS_UP.set(1 if up else 0)
            self._reported = up

    def mark_down(self) -> None:
        self._down_until = time.monotonic() + OUTAGE_BACKOFF_SECONDS
        self._report(False)

    async def run(self, call: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
        if self.client is None or not self.up:
            raise RedisUnavailable("redis is down")
        try:
            result = await call(self.client)
        except REDIS_ERRORS as exc:
            self.mark_down()
            raise RedisUnavailable(type(exc).__name__) from None
        self._report(True)
        return result

    async def ping(self) -> bool:
        """A probe that ignores the outage memory (health checks must see recovery)."""
        if self.client is None:
            return False
        try:
            await self.client.ping()
        except REDIS_ERRORS:
            self.mark_down()
            return False
        self._down_until = 0.0
        self._report(True)
        return True


@dataclass(frozen=True, slots=True)
class RateLimitState:
    limit: int
    remaining: int
    reset_at: int  # unix seconds when the window ends

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(self.reset_at),
        }


#: Sliding-window log, atomically over several keys: a request is admitted only when every key
#: has room, and then counted in every key. ARGV: window ms, limit, the members' prefix, then the
#: requests as "<ms>:<seq>" items separated by commas (one argument: redis-py packs arguments in
#: Python, one by one), handled in order exactly as that many calls one after another would be.
#: A request's member is "<ms>:<prefix><seq>". Returns {admitted, used, ms until the oldest
#: expires} per request, flattened.
SLIDING_WINDOW_LUA = """
local window, limit, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local out = {}
for at, seq in string.gmatch(ARGV[4], '(%d+):(%x+)') do
  local now, member = tonumber(at), at .. ':' .. prefix .. seq
  local used, wait = 0, 0
  for _, key in ipairs(KEYS) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    local n = redis.call('ZCARD', key)
    if n > used then used = n end
    if n >= limit then
      local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
      local until_free = tonumber(oldest[2]) + window - now
      if until_free > wait then wait = until_free end
    end
  end
  if used >= limit then
    out[#out + 1] = 0; out[#out + 1] = used; out[#out + 1] = wait
  else
    for _, key in ipairs(KEYS) do
      redis.call('ZADD', key, now, member)
      redis.call('PEXPIRE', key, window)
    end
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    out[#out + 1] = 1; out[#out + 1] = used + 1; out[#out + 1] = tonumber(oldest[2]) + window - now
  end
end
return out
"""
#: Sent as EVALSHA (40 bytes) rather than the script on every call; EVAL once when Redis has
#: not seen it (a restart, a flush), which also makes Redis remember it again.
SLIDING_WINDOW_SHA = hashlib.sha1(SLIDING_WINDOW_LUA.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class _Window:
    """One request's check: its keys and "<ms>:<seq>" (its time and, with the limiter's prefix,
    its unique member)."""

    keys: tuple[str, ...]
    at: str
    now_ms: int


class RateLimiter:
    """A sliding one-minute window per credential and per client IP."""

    def __init__(
        self, guard: RedisGuard, *, per_minute: int, enabled: bool, fail_open: bool
    ) -> None:
        self.guard = guard
        self.per_minute = per_minute
        self.enabled = enabled
        self.fail_open = fail_open
        # Window members must be unique per request across processes: a random prefix per
        # limiter and a counter, instead of a uuid4 (an os.urandom call) per request.
        self._member_prefix = secrets.token_hex(6)
        self._member_seq = itertools.count()
        # Concurrent requests' checks share one pipeline (one round trip, one pooled connection):
        # redis-py's per-command overhead was most of what a rate-limited request cost here.
        self._groups: dict[int, GroupCommit[_Window, list[Any]]] = {}

    def _unavailable(self) -> None:
        if not self.fail_open:
            raise ServiceUnavailable(
                "rate limiter unavailable",
                headers={"Retry-After": str(int(OUTAGE_BACKOFF_SECONDS) + 1)},
            )

    async def hit(self, *keys: str) -> RateLimitState | None:
        """Count one request against each key; raise RateLimited when any is over the limit.

        Returns None when limiting is off or Redis is down in fail-open mode. Concurrent calls
        share one Redis call (group commit).
        """
        if not self.enabled:
            return None
        window = self._window(keys)

        async def count(client: redis.asyncio.Redis) -> list[Any]:
            return await self._group(client).run(window)

        try:
            result = await self.guard.run(count)
        except RedisUnavailable:
            self._unavailable()
            return None
        verdict = self._verdict(window, result)
        if isinstance(verdict, RateLimited):
            raise verdict
        return verdict

    async def hit_each(
        self, keysets: Sequence[tuple[str, ...]]
    ) -> list[RateLimitState | ApiError | None]:
        """hit() for several requests at once, in order, in one Redis call; each request's
        outcome is returned (RateLimited, or ServiceUnavailable when Redis is down and the mode is
        closed), not raised. For a caller that batches requests itself."""
        if not self.enabled:
            return [None] * len(keysets)
        windows = [self._window(keys) for keys in keysets]
        try:
            results = await self.guard.run(lambda client: self._evaluate(client, windows))
        except RedisUnavailable:
            try:
                self._unavailable()
            except ApiError as exc:
                return [exc] * len(keysets)
            return [None] * len(keysets)
        return [
            self._verdict(window, result) for window, result in zip(windows, results, strict=True)
        ]

    def _window(self, keys: Sequence[str]) -> _Window:
        now_ms = int(time.time() * 1000)
        return _Window(
            keys=tuple(f"rl:{key}" for key in keys),
            at=f"{now_ms}:{next(self._member_seq):x}",
            now_ms=now_ms,
        )

    def _verdict(self, window: _Window, result: list[Any]) -> RateLimitState | RateLimited:
        admitted, used, wait_ms = result
        reset_at = math.ceil((window.now_ms + int(wait_ms)) / 1000)
        state = RateLimitState(
            limit=self.per_minute, remaining=self.per_minute - int(used), reset_at=reset_at
        )
        if int(admitted):
            return state
        retry_after = max(1, math.ceil(int(wait_ms) / 1000))
        return RateLimited(
            "rate limit exceeded", headers={"Retry-After": str(retry_after), **state.headers()}
        )

    async def _evaluate(
        self, client: redis.asyncio.Redis, windows: list[_Window]
    ) -> list[list[Any]]:
        """The windows' results in order (a Redis error raises, for the guard to see)."""
        loop = asyncio.get_running_loop()
        batch: list[Pending[_Window, list[Any]]] = [
            Pending(w, loop.create_future()) for w in windows
        ]
        await self._write(client, batch)
        return [p.future.result() for p in batch]

    async def _write(
        self, client: redis.asyncio.Redis, batch: list[Pending[_Window, list[Any]]]
    ) -> None:
        await _run_windows(
            client,
            batch,
            window_ms=WINDOW_SECONDS * 1000,
            limit=self.per_minute,
            prefix=self._member_prefix,
        )

    def _group(self, client: redis.asyncio.Redis) -> GroupCommit[_Window, list[Any]]:
        group = self._groups.get(id(client))
        if group is None:

            async def write(batch: list[Pending[_Window, list[Any]]]) -> None:
                await self._write(client, batch)

            group = self._groups[id(client)] = GroupCommit(write)
        return group


async def _run_windows(
    client: redis.asyncio.Redis,
    batch: list[Pending[_Window, list[Any]]],
    *,
    window_ms: int,
    limit: int,
    prefix: str,
) -> None:
    """The batch's checks: one script call per distinct set of keys, all in one pipeline.

    Concurrent requests of one caller share their keys, so a burst costs Redis and redis-py one
    command, not one per request (that was most of a rate-limited request's cost here). A
    connection error fails the whole batch (each caller's RedisGuard sees it); a script Redis has
    forgotten is sent in full, once per call that met NOSCRIPT.
    """
    groups: dict[tuple[str, ...], list[Pending[_Window, list[Any]]]] = {}
    for pending in batch:
        groups.setdefault(pending.item.keys, []).append(pending)
    calls = []
    for keys, members in groups.items():
        args: list[str | int] = [
            *keys,
            window_ms,
            limit,
            prefix,
            ",".join([p.item.at for p in members]),
        ]
        calls.append((len(keys), args, members))
    results: list[Any]
    if len(calls) == 1:  # the usual burst, one caller: redis-py's pipeline costs more than a call
        numkeys, args, _ = calls[0]
        try:
            results = [await client.evalsha(SLIDING_WINDOW_SHA, numkeys, *args)]
        except redis.exceptions.NoScriptError as exc:
            results = [exc]
    else:
        pipe = client.pipeline(transaction=False)
        for numkeys, args, _ in calls:
            pipe.evalsha(SLIDING_WINDOW_SHA, numkeys, *args)
        results = await pipe.execute(raise_on_error=False)
    for (numkeys, args, members), result in zip(calls, results, strict=True):
        if isinstance(result, redis.exceptions.NoScriptError):
            try:
                result = await client.eval(SLIDING_WINDOW_LUA, numkeys, *args)
            except redis.exceptions.ResponseError as exc:
                result = exc
        for index, pending in enumerate(members):
            if isinstance(result, Exception):
                pending.reject(result)
            else:
                pending.resolve(list(result[3 * index : 3 * index + 3]))


def _email_key(email: str) -> str:
    # Hashed: the email is personal data and Redis keys show up in monitoring.
    return "login:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


#: DECR only a live count: one expired meanwhile must not come back without its expiry.
_GIVE_BACK = "if redis.call('exists', KEYS[1]) == 1 then return redis.call('decr', KEYS[1]) end"


class LoginThrottle:
    """At most LOGIN_MAX_FAILURES failed logins evaluated per email per 15 minutes.

    An attempt is counted before its password is checked, in one atomic Redis transaction, so
    concurrent guesses cannot all read a count below the limit (30 at once were all evaluated
    when the count was read first and raised after). A login that succeeds gives its count back.
    """

    def __init__(self, guard: RedisGuard, *, fail_open: bool) -> None:
        self.guard = guard
        self.fail_open = fail_open

    async def take(self, email: str) -> bool:
        """Count an attempt; RateLimited past the limit. False: Redis is down and the throttle
        fails open, so nothing was counted (nothing to give back)."""
        key = _email_key(email)

        async def incr(client: redis.asyncio.Redis) -> tuple[int, int]:
            pipe = client.pipeline(transaction=True)  # MULTI/EXEC: nothing runs in between
            pipe.set(key, 0, ex=LOGIN_WINDOW_SECONDS, nx=True)
            pipe.incr(key)
            pipe.ttl(key)
            _, count, ttl = await pipe.execute()
            return int(count), int(ttl)

        try:
            attempts, ttl = await self.guard.run(incr)
        except RedisUnavailable:
            if not self.fail_open:
                raise ServiceUnavailable(
                    "login throttle unavailable", headers={"Retry-After": "2"}
                ) from None
            return False
        if attempts > LOGIN_MAX_FAILURES:
            retry_after = ttl if ttl > 0 else LOGIN_WINDOW_SECONDS
            raise RateLimited(
                "too many failed login attempts", headers={"Retry-After": str(retry_after)}
            )
        return True

    async def give_back(self, email: str) -> None:
        """The attempt succeeded: it is no failure (earlier failures stay counted)."""
        key = _email_key(email)
        with contextlib.suppress(RedisUnavailable):
            await self.guard.run(lambda client: client.eval(_GIVE_BACK, 1, key))


#: Families revoked lately, scored by when their revocation ends (unix seconds): what each
#: process reads to refuse the access tokens of a revoked family.
REVOKED_FAMILIES_KEY = "refresh:families-revoked"
#: How often a process reads that index (and retries revocations Redis missed): the longest an
#: access token of a revoked family still works in another process.
REVOKED_SYNC_SECONDS = 1.0
#: Families a process keeps (the newest revocations win past it): each needs a login.
REVOKED_FAMILIES_KEPT = 100_000


class RefreshTokenRegistry:
    """Refresh tokens are single use: a jti, once used or logged out, is refused.

    A revoked family (a rotated token came back) is refused at refresh from Redis, and its
    access tokens on every request from an in-process copy of the revoked families, which
    sync() refreshes from Redis once a second: one set lookup per request, no round trip.
    """

    def __init__(self, guard: RedisGuard) -> None:
        self.guard = guard
        #: family -> when its revocation ends (unix seconds).
        self._revoked: dict[str, float] = {}
        #: Revocations Redis has not taken yet (it was down): family -> when they end.
        self._unwritten: dict[str, float] = {}

    def access_revoked(self, family: str) -> bool:
        """True when access tokens of this family must be refused (from memory, no Redis)."""
        until = self._revoked.get(family)
        return until is not None and until > time.time()

    async def family_revoked(self, family: str) -> bool:
        """True when a token of this login's family was reused: none of it is accepted."""
        if self.access_revoked(family):  # also one Redis has not heard of yet
            return True
        name = f"refresh:family-revoked:{family}"
        try:
            return bool(await self.guard.run(lambda client: client.exists(name)))
        except RedisUnavailable:
            raise ServiceUnavailable(
                "token service unavailable", headers={"Retry-After": "2"}
            ) from None

    async def revoke_family(self, family: str, ttl_seconds: int) -> None:
        """A rotated token came back: someone holds a copy, so the whole family goes (OAuth 2.0
        security BCP, refresh token reuse detection), its access tokens included.

        Closed when Redis is down: the family is refused here at once, and the revocation is
        kept and written by sync() once Redis answers again, never dropped."""
        until = time.time() + max(1, ttl_seconds)
        self._remember(family, until)
        self._unwritten[family] = until
        with contextlib.suppress(RedisUnavailable):
            await self._write_unwritten()

    async def sync(self) -> None:
        """Write the revocations Redis missed, then read every process' revocations.
        RedisUnavailable when Redis is down (what is known stays known)."""
        await self._write_unwritten()
        now = time.time()

        async def read(client: redis.asyncio.Redis) -> list[tuple[Any, float]]:
            pipe = client.pipeline(transaction=False)
            pipe.zremrangebyscore(REVOKED_FAMILIES_KEY, "-inf", now)
            pipe.zrange(REVOKED_FAMILIES_KEY, -REVOKED_FAMILIES_KEPT, -1, withscores=True)
            _, found = await pipe.execute()
            return list(found)

        found = await self.guard.run(read)
        # Merged, not replaced: a revocation is never undone, and one made here while the read
        # was on its way must not drop out of memory until the next read.
        now = time.time()
        revoked = {f: u for f, u in self._revoked.items() if u > now}
        for family, until in found:
            revoked[family.decode() if isinstance(family, bytes) else str(family)] = float(until)
        if len(revoked) > REVOKED_FAMILIES_KEPT:
            newest = sorted(revoked.items(), key=lambda item: item[1])[-REVOKED_FAMILIES_KEPT:]
            revoked = dict(newest)
        self._revoked = revoked

    async def keep_synced(self, interval: float = REVOKED_SYNC_SECONDS) -> None:
        """sync() every `interval` seconds until cancelled (the app's lifespan runs it)."""
        while True:
            try:
                await self.sync()
            except RedisUnavailable:
                pass  # known down; what is known stays known
            except Exception as exc:  # a surprise must not end the syncing for good
                log.error("revoked families not synced", error=type(exc).__name__)
            await asyncio.sleep(interval)

    def _remember(self, family: str, until: float) -> None:
        if len(self._revoked) >= REVOKED_FAMILIES_KEPT:
            now = time.time()
            self._revoked = {f: u for f, u in self._revoked.items() if u > now}
        self._revoked[family] = until

    async def _write_unwritten(self) -> None:
        if not self._unwritten:
            return
        pending = dict(self._unwritten)
        now = time.time()

        async def write(client: redis.asyncio.Redis) -> None:
            pipe = client.pipeline(transaction=True)
            for family, until in pending.items():
                ttl = max(1, math.ceil(until - now))
                pipe.set(f"refresh:family-revoked:{family}", 1, ex=ttl)
                pipe.zadd(REVOKED_FAMILIES_KEY, {family: until})
            await pipe.execute()

        await self.guard.run(write)
        for family in pending:
            self._unwritten.pop(family, None)

    async def consume(self, jti: str, ttl_seconds: int) -> bool:
        """Mark the jti used; True when it was unused until now (atomic against replays).

        Raises ServiceUnavailable when Redis is down: rotation cannot be enforced without it.
        """
        name = f"refresh:used:{jti}"
        try:
            result = await self.guard.run(
                lambda client: client.set(name, 1, ex=max(1, ttl_seconds), nx=True)
            )
        except RedisUnavailable:
            raise ServiceUnavailable(
                "token service unavailable", headers={"Retry-After": "2"}
            ) from None
        return bool(result)
