"""Token attacks, refresh rotation, logout, login lockout, API keys and permission checks."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from typing import Any

import asyncpg
import jwt
import orjson
import pytest
from api_support import (
    ACCESS_SECRET,
    PASSWORD,
    error_code,
    login,
    new_email,
    register,
    running_app,
)

from reference_server import ratelimit
from reference_server.api import auth as auth_api


def _claims(account: dict[str, str], **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": account["user_id"],
        "org": account["organization_id"],
        "perms": ["job:read", "job:write"],
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "typ": "access",
    }
    claims.update(changes)
    return claims


def _unsigned(claims: dict[str, Any], alg: str = "none") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(orjson.dumps({"alg": alg, "typ": "JWT"}))
    return f"{header}.{b64(orjson.dumps(claims))}."


async def test_token_attacks_are_refused(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        account = await register(api)
        claims = _claims(account)
        attacks = {
            "alg none": _unsigned(claims, "none"),
            "alg None": _unsigned(claims, "None"),
            "wrong key": jwt.encode(claims, "not-the-server-key-" * 3, algorithm="HS256"),
            "HS512 with the right key": jwt.encode(claims, ACCESS_SECRET, algorithm="HS512"),
            "refresh as access": account["refresh_token"],
            "refresh-typed token signed with the access key": jwt.encode(
                {**claims, "typ": "refresh"}, ACCESS_SECRET, algorithm="HS256"
            ),
            "no jti": jwt.encode(
                {k: v for k, v in claims.items() if k != "jti"}, ACCESS_SECRET, algorithm="HS256"
            ),
            "garbage": "not.a.token",
        }
        results = {}
        for name, token in attacks.items():
            response = await api.get("/api/v1/auth/validate", token=token)
            results[name] = (response.status_code, await error_code(response))
        expired = await api.get(
            "/api/v1/auth/validate",
            token=jwt.encode(
                _claims(account, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
                ACCESS_SECRET,
                algorithm="HS256",
            ),
        )
        missing = await api.get("/api/v1/auth/validate")
        wrong_scheme = await api.get(
            "/api/v1/auth/validate", headers={"Authorization": "Basic dXNlcjpwYXNz"}
        )
        genuine = await api.get("/api/v1/auth/validate", token=account["access_token"])
    assert results == dict.fromkeys(attacks, (401, "AUTH_001"))
    assert expired.status_code == 401 and await error_code(expired) == "AUTH_002"
    assert missing.status_code == 401 and await error_code(missing) == "AUTH_001"
    assert wrong_scheme.status_code == 401
    assert genuine.status_code == 200
    data = (await genuine.get_json())["data"]
    assert data["valid"] is True
    assert data["organization_id"] == account["organization_id"]
    assert "api_key:write" in data["permissions"]


async def test_refresh_rotates_and_the_old_token_is_refused(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        account = await register(api)
        old = account["refresh_token"]
        first = await api.post("/api/v1/auth/refresh", json={"refresh_token": old})
        new_pair = (await first.get_json())["data"]
        works = await api.get("/api/v1/auth/validate", token=new_pair["access_token"])
        access_as_refresh = await api.post(
            "/api/v1/auth/refresh", json={"refresh_token": new_pair["access_token"]}
        )
        # Last: the replay revokes the family, new_pair included (reuse detection).
        replay = await api.post("/api/v1/auth/refresh", json={"refresh_token": old})
    assert first.status_code == 200
    assert new_pair["token_type"] == "Bearer" and new_pair["expires_in"] == 3600
    assert new_pair["refresh_token"] != old
    assert replay.status_code == 401 and await error_code(replay) == "AUTH_001"
    assert works.status_code == 200
    assert access_as_refresh.status_code == 401


async def test_logout_revokes_the_refresh_token(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        account = await register(api)
        out = await api.post(
            "/api/v1/auth/logout", json={"refresh_token": account["refresh_token"]},
            token=account["access_token"],
        )
        after = await api.post(
            "/api/v1/auth/refresh", json={"refresh_token": account["refresh_token"]}
        )
    assert out.status_code == 204
    assert after.status_code == 401


async def test_logout_needs_the_token_owners_credentials(database_url: str, redis_url: str) -> None:
    """A refresh token alone, or another user's access token, cannot log its owner out."""
    async with running_app(database_url, redis_url) as api:
        victim = await register(api)
        stranger = await register(api)
        anonymous = await api.post(
            "/api/v1/auth/logout", json={"refresh_token": victim["refresh_token"]}
        )
        foreign = await api.post(
            "/api/v1/auth/logout", json={"refresh_token": victim["refresh_token"]},
            token=stranger["access_token"],
        )
        still_valid = await api.post(
            "/api/v1/auth/refresh", json={"refresh_token": victim["refresh_token"]}
        )
    assert anonymous.status_code == 401
    assert foreign.status_code == 403
    assert await error_code(foreign) == "PERM_001"
    assert still_valid.status_code == 200


async def test_login_locks_after_five_failures(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        email = new_email()
        await register(api, email)
        failures = [
            await api.post("/api/v1/auth/login", json={"email": email, "password": "wrong-pass"})
            for _ in range(5)
        ]
        locked = await api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        other = await register(api)  # another email is not locked
    assert [r.status_code for r in failures] == [401] * 5
    assert locked.status_code == 429
    assert await error_code(locked) == "RATE_LIMIT_EXCEEDED"
    assert 0 < int(locked.headers["Retry-After"]) <= 900
    assert other["access_token"]


async def test_wrong_password_and_unknown_email_look_alike(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        email = new_email()
        await register(api, email)
        wrong = await api.post("/api/v1/auth/login", json={"email": email, "password": "nope-nope"})
        unknown = await api.post(
            "/api/v1/auth/login", json={"email": new_email(), "password": "nope-nope"}
        )
        duplicate = await api.post(
            "/api/v1/auth/register",
            json={"email": email.upper(), "password": PASSWORD, "organization_name": "Again"},
        )
        short = await api.post(
            "/api/v1/auth/register",
            json={"email": new_email(), "password": "short", "organization_name": "X"},
        )
    assert (await wrong.get_json())["error"] == (await unknown.get_json())["error"]
    assert duplicate.status_code == 409
    assert short.status_code == 400


async def test_passwords_are_stored_as_argon2_hashes(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        account = await register(api)
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval(
            "SELECT password_hash FROM users WHERE id = $1", uuid.UUID(account["user_id"])
        )
    finally:
        await conn.close()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


async def test_api_keys_shown_once_usable_both_ways_and_revocable(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        token = (await register(api))["access_token"]
        created = await api.post(
            "/api/v1/api-keys",
            token=token,
            json={"name": "ci", "permissions": ["job:read", "job:write"]},
        )
        assert created.status_code == 201
        key_info = (await created.get_json())["data"]
        key = key_info["key"]
        listed = await (await api.get("/api/v1/api-keys", token=token)).get_json()
        as_bearer = await api.post(
            "/api/v1/jobs",
            token=key,
            json={"queue_name": "default", "job_type": "t", "payload": {}},
        )
        as_header = await api.get("/api/v1/jobs", headers={"X-API-Key": key})
        beyond_its_permissions = await api.get("/api/v1/queues", headers={"X-API-Key": key})
        revoked = await api.delete(f"/api/v1/api-keys/{key_info['id']}", token=token)
        after_revoke = await api.get("/api/v1/jobs", headers={"X-API-Key": key})
        lookalike = await api.get("/api/v1/jobs", headers={"X-API-Key": "tf_" + "A" * 32})
    assert len(key) == 35 and key.startswith("tf_") and key[3:].isalnum()
    assert all("key" not in k for k in listed["data"]["api_keys"])
    assert key not in orjson.dumps(listed).decode()
    assert as_bearer.status_code == 201
    assert as_header.status_code == 200
    assert "X-RateLimit-Limit" in as_header.headers
    assert beyond_its_permissions.status_code == 403
    assert await error_code(beyond_its_permissions) == "PERM_001"
    assert revoked.status_code == 204
    assert after_revoke.status_code == 401
    assert lookalike.status_code == 401
    conn = await asyncpg.connect(database_url)
    try:
        stored = await conn.fetchval("SELECT key_hash FROM api_keys")
        everything = await conn.fetchval("SELECT row_to_json(k)::text FROM api_keys k")
    finally:
        await conn.close()
    assert len(stored) == 32  # SHA-256
    assert key not in everything


async def test_api_key_cannot_exceed_its_creator(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        admin = (await register(api))["access_token"]
        limited = (
            await (
                await api.post(
                    "/api/v1/api-keys",
                    token=admin,
                    json={"name": "limited", "permissions": ["api_key:write", "job:read"]},
                )
            ).get_json()
        )["data"]["key"]
        escalate = await api.post(
            "/api/v1/api-keys",
            token=limited,
            json={"name": "more", "permissions": ["queue:write"]},
        )
        unknown_permission = await api.post(
            "/api/v1/api-keys", token=admin, json={"name": "x", "permissions": ["root"]}
        )
    assert escalate.status_code == 403
    assert unknown_permission.status_code == 400


async def test_member_role_holds_the_contract_permissions(
    database_url: str, redis_url: str
) -> None:
    async with running_app(database_url, redis_url) as api:
        admin = await register(api)
        email = new_email("member")
        # No endpoint invites members (the contract has none); the row is what an admin tool writes.
        conn = await asyncpg.connect(database_url)
        try:
            admin_hash = await conn.fetchval(
                "SELECT password_hash FROM users WHERE id = $1", uuid.UUID(admin["user_id"])
            )
            await conn.execute(
                "INSERT INTO users (organization_id, email, password_hash, role) "
                "VALUES ($1, $2, $3, 'member')",
                uuid.UUID(admin["organization_id"]),
                email,
                admin_hash,
            )
        finally:
            await conn.close()
        member = (await login(api, email))["access_token"]
        submit = await api.post(
            "/api/v1/jobs", token=member, json={"queue_name": "default", "job_type": "t",
                                                "payload": {}}
        )
        read_queues = await api.get("/api/v1/queues", token=member)
        write_queue = await api.post("/api/v1/queues", token=member, json={"name": "mine"})
        workers = await api.get("/api/v1/workers", token=member)
        keys = await api.post(
            "/api/v1/api-keys", token=member, json={"name": "k", "permissions": ["job:read"]}
        )
    assert submit.status_code == 201
    assert read_queues.status_code == 200
    assert [write_queue.status_code, workers.status_code, keys.status_code] == [403, 403, 403]



async def test_a_concurrent_burst_of_guesses_gets_five_evaluated_at_most(
    database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's reproduction: 30 guesses for one email all in flight at once, the right one
    20th. At most five are evaluated in all, the others are answered 429, and the right one,
    arriving after five were taken, is refused instead of logging in.

    Password checks wait at a gate until every guess has been sent and has either reached its
    check or been answered: with the count read before the check and raised after, all 30 reach
    it (and the 20th logs in). The first 19 are sent before the rest, so which five come first
    does not depend on how the event loop interleaves one gather."""
    gate = asyncio.Event()
    reached: list[str] = []
    evaluated: list[tuple[str, bool]] = []
    real = auth_api.verify_password

    async def gated(stored: str | None, password: str) -> bool:
        reached.append(password)
        await gate.wait()
        valid = await real(stored, password)
        evaluated.append((password, valid))
        return valid

    async def settled(tasks: list[asyncio.Task[Any]], deadline: float) -> None:
        # Bounded: each guess is either at the gate or answered, or the test fails.
        loop = asyncio.get_running_loop()
        while len(reached) + sum(task.done() for task in tasks) < len(tasks):
            assert loop.time() < deadline, f"{len(reached)} at the gate of {len(tasks)} sent"
            await asyncio.sleep(0.01)

    async with running_app(database_url, redis_url, RATE_LIMIT_PER_MINUTE=1000) as api:
        email = new_email()
        await register(api, email)
        monkeypatch.setattr(auth_api, "verify_password", gated)
        guesses = [f"wrong-guess-{n}" for n in range(30)]
        guesses[19] = PASSWORD
        deadline = asyncio.get_running_loop().time() + 15
        tasks: list[asyncio.Task[Any]] = []
        for batch in (guesses[:19], guesses[19:]):
            tasks += [
                asyncio.create_task(
                    api.post("/api/v1/auth/login", json={"email": email, "password": guess})
                )
                for guess in batch
            ]
            await settled(tasks, deadline)
        gate.set()
        answers = await asyncio.wait_for(asyncio.gather(*tasks), 15)
    statuses = [r.status_code for r in answers]
    assert len(evaluated) <= 5, evaluated
    assert statuses.count(401) + statuses.count(200) <= 5, statuses
    assert statuses.count(429) == 30 - len(evaluated), statuses
    assert statuses.count(401) == len(evaluated), statuses
    assert PASSWORD not in [password for password, _ in evaluated]
    assert statuses[19] == 429, statuses


async def test_a_successful_login_gives_its_attempt_back(database_url: str, redis_url: str) -> None:
    async with running_app(database_url, redis_url) as api:
        email = new_email()
        await register(api, email)  # logs in once
        for _ in range(4):
            await login(api, email)
        failures = [
            await api.post("/api/v1/auth/login", json={"email": email, "password": "wrong-pass"})
            for _ in range(5)
        ]
        locked = await api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert [r.status_code for r in failures] == [401] * 5
    assert locked.status_code == 429


async def _rotated_once(api: Any) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(a new account, a second login of it, the pair its first refresh token rotated into)."""
    account = await register(api)
    other_login = await login(api, account["email"])
    rotated = (await (await api.post(
        "/api/v1/auth/refresh", json={"refresh_token": account["refresh_token"]}
    )).get_json())["data"]
    return account, other_login, rotated


async def test_reusing_a_rotated_refresh_token_revokes_its_whole_family(
    database_url: str, redis_url: str
) -> None:
    """Reuse detection (OAuth 2.0 security BCP): whoever holds the newest token of a family that
    saw a replay loses it too; another login's family is untouched."""
    async with running_app(database_url, redis_url) as api:
        account, other_login, rotated = await _rotated_once(api)
        old = account["refresh_token"]
        replay = await api.post("/api/v1/auth/refresh", json={"refresh_token": old})
        newest = await api.post(
            "/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
        )
        unrelated = await api.post(
            "/api/v1/auth/refresh", json={"refresh_token": other_login["refresh_token"]}
        )
    assert replay.status_code == 401
    assert newest.status_code == 401 and await error_code(newest) == "AUTH_001"
    assert unrelated.status_code == 200


async def test_reusing_a_rotated_refresh_token_refuses_the_familys_access_tokens(
    database_url: str, redis_url: str
) -> None:
    """The access tokens issued from a revoked family stop working at once in this process,
    and within the sync period in another one (a second app on the same Redis); another
    login's access token keeps working."""
    async with (
        running_app(database_url, redis_url) as api,
        running_app(database_url, redis_url) as other_process,
    ):
        account, other_login, rotated = await _rotated_once(api)
        old = account["refresh_token"]
        family = [account["access_token"], rotated["access_token"]]
        before = [
            (await other_process.get("/api/v1/auth/validate", token=t)).status_code
            for t in family
        ]
        replay = await api.post("/api/v1/auth/refresh", json={"refresh_token": old})
        here = [(await api.get("/api/v1/auth/validate", token=t)).status_code for t in family]
        submit = await api.post(
            "/api/v1/jobs",
            token=rotated["access_token"],
            json={"queue_name": "default", "job_type": "t", "payload": {}},
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3 * ratelimit.REVOKED_SYNC_SECONDS + 2
        there: list[int] = []
        while loop.time() < deadline:  # bounded: the other process reads Redis each second
            there = [
                (await other_process.get("/api/v1/auth/validate", token=t)).status_code
                for t in family
            ]
            if there == [401, 401]:
                break
            await asyncio.sleep(0.1)
        unrelated = await api.get("/api/v1/auth/validate", token=other_login["access_token"])
    assert before == [200, 200]
    assert replay.status_code == 401
    assert here == [401, 401]
    assert submit.status_code == 401 and await error_code(submit) == "AUTH_001"
    assert there == [401, 401]
    assert unrelated.status_code == 200
