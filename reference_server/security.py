"""Credentials: HS256 JWTs (access and refresh), argon2 password hashes, API keys, permissions.

Nothing here touches HTTP or the database; the API layer and accounts.py call these functions.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from reference_server.exceptions import AuthenticationFailed, PermissionDenied, TokenExpired

ALGORITHM = "HS256"
API_KEY_PREFIX = "tf_"
API_KEY_RANDOM_LENGTH = 32
API_KEY_ALPHABET = string.ascii_letters + string.digits
API_KEY_SHOWN_PREFIX = 7  # "tf_" and four characters, enough to tell keys apart in a listing
#: Clock skew tolerated between processes and hosts when checking exp/iat.
LEEWAY_SECONDS = 5
#: Verified access tokens remembered per process (a client sends the same one until it expires).
VERIFIED_CACHE_SIZE = 4096


class Permission(StrEnum):
    QUEUE_READ = "queue:read"
    QUEUE_WRITE = "queue:write"
    JOB_READ = "job:read"
    JOB_WRITE = "job:write"
    WORKER_READ = "worker:read"
    WORKER_WRITE = "worker:write"
    API_KEY_WRITE = "api_key:write"


ALL_PERMISSIONS = frozenset(Permission)
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(p.value for p in Permission),
    "member": frozenset({Permission.QUEUE_READ, Permission.JOB_READ, Permission.JOB_WRITE}),
}


class TokenType(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    """Who is calling: a user (by access token) or an API key, within one organisation."""

    kind: str  # "user" or "api_key"
    user_id: uuid.UUID
    organization_id: uuid.UUID
    permissions: frozenset[str]
    credential_id: str  # token jti or API key id: what rate limits count against
    expires_at: datetime | None = None
    api_key_id: uuid.UUID | None = None

    @property
    def actor(self) -> str:
        """The audit log's actor: user:<id> or api_key:<id>."""
        if self.api_key_id is not None:
            return f"api_key:{self.api_key_id}"
        return f"user:{self.user_id}"

    @property
    def rate_key(self) -> str:
        if self.api_key_id is not None:
            return f"key:{self.api_key_id}"
        return f"user:{self.user_id}"

    def require(self, permission: str) -> None:
        if permission not in self.permissions:
            raise PermissionDenied(f"missing permission {permission}")


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    permissions: frozenset[str]
    jti: str
    issued_at: datetime
    expires_at: datetime
    typ: TokenType
    #: The login a token descends from (`fam`), shared by every rotation of it and by the
    #: access tokens issued with them.
    family: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_jti: str

    def to_api(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


@dataclass(kw_only=True)
class TokenService:
    """Issues and verifies the two kinds of JWT, each with its own key."""

    access_secret: str
    refresh_secret: str
    access_minutes: int
    refresh_minutes: int
    _now: Any = field(default=lambda: datetime.now(UTC))
    # Access token -> its claims, once its signature and claims checked out: decoding and the
    # HMAC are most of the cost of authenticating a request. Only expiry changes what a token
    # says, and it is checked on every hit (a revoked family is the caller's check).
    _verified: dict[str, TokenClaims] = field(default_factory=dict, repr=False)

    def _encode(
        self,
        typ: TokenType,
        user_id: uuid.UUID,
        org_id: uuid.UUID,
        permissions: frozenset[str],
        lifetime: timedelta,
        family: str | None = None,
    ) -> tuple[str, str]:
        now: datetime = self._now()
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "org": str(org_id),
            "iat": int(now.timestamp()),
            "exp": int((now + lifetime).timestamp()),
            "jti": jti,
            "typ": typ.value,
        }
        if typ is TokenType.ACCESS:
            claims["perms"] = sorted(permissions)
        # A login starts a family; each rotation carries it on (reuse detection), and its
        # access tokens name it, so that revoking the family refuses them too.
        claims["fam"] = family or jti
        secret = self.access_secret if typ is TokenType.ACCESS else self.refresh_secret
        return jwt.encode(claims, secret, algorithm=ALGORITHM), jti

    def issue_pair(
        self,
        user_id: uuid.UUID,
        org_id: uuid.UUID,
        permissions: frozenset[str],
        *,
        family: str | None = None,
    ) -> TokenPair:
        family = family or uuid.uuid4().hex
        access, _ = self._encode(
            TokenType.ACCESS,
            user_id,
            org_id,
            permissions,
            timedelta(minutes=self.access_minutes),
            family,
        )
        refresh, refresh_jti = self._encode(
            TokenType.REFRESH,
            user_id,
            org_id,
            frozenset(),
            timedelta(minutes=self.refresh_minutes),
            family,
        )
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            expires_in=self.access_minutes * 60,
            refresh_jti=refresh_jti,
        )

    def verify(self, token: str, typ: TokenType) -> TokenClaims:
        """Decode and check a token of the given kind; AUTH_002 when expired, else AUTH_001."""
        if typ is TokenType.ACCESS:
            known = self._verified.get(token)
            if known is not None:
                # PyJWT's rule on its own clock: expired once exp <= now - leeway.
                if known.expires_at.timestamp() > time.time() - LEEWAY_SECONDS:
                    return known
                del self._verified[token]
            claims = self._verify(token, typ)
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.clear()  # bounded; refilled by the tokens still in use
            self._verified[token] = claims
            return claims
        return self._verify(token, typ)

    def _verify(self, token: str, typ: TokenType) -> TokenClaims:
        secret = self.access_secret if typ is TokenType.ACCESS else self.refresh_secret
        try:
            # algorithms=[HS256] is the rule: 'none', RS256 (key confusion) and every other alg
            # are refused before any signature check.
            decoded = jwt.decode_complete(
                token,
                secret,
                algorithms=[ALGORITHM],
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "jti", "sub", "typ"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("token expired") from None
        except jwt.PyJWTError:
            raise AuthenticationFailed("invalid token") from None
        if decoded["header"].get("alg") != ALGORITHM:  # belt and braces over PyJWT's own check
            raise AuthenticationFailed("unsupported token algorithm")
        claims = decoded["payload"]
        if claims.get("typ") != typ.value:
            raise AuthenticationFailed(f"not an {typ.value} token")
        try:
            perms = claims.get("perms", [])
            if not isinstance(perms, list) or not all(isinstance(p, str) for p in perms):
                raise ValueError("perms")
            return TokenClaims(
                user_id=uuid.UUID(str(claims["sub"])),
                organization_id=uuid.UUID(str(claims["org"])),
                permissions=frozenset(perms) & frozenset(p.value for p in Permission),
                jti=str(claims["jti"]),
                issued_at=datetime.fromtimestamp(int(claims["iat"]), UTC),
                expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
                typ=typ,
                family=str(claims.get("fam") or claims["jti"]),
            )
        except (KeyError, ValueError, TypeError):
            raise AuthenticationFailed("invalid token claims") from None


# Passwords ------------------------------------------------------------------------------------

#: argon2id with OWASP's recommended minimum (19 MiB, 2 passes): strong, and a login costs tens of
#: milliseconds rather than hundreds on a small host, which also blunts login floods.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
#: Verified against when the email is unknown, so both paths cost the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


async def hash_password(password: str) -> str:
    # argon2 is deliberately slow; off the event loop so other requests keep flowing.
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


# API keys -------------------------------------------------------------------------------------


def generate_api_key() -> str:
    return API_KEY_PREFIX + "".join(
        secrets.choice(API_KEY_ALPHABET) for _ in range(API_KEY_RANDOM_LENGTH)
    )


def looks_like_api_key(value: str) -> bool:
    body = value[len(API_KEY_PREFIX) :]
    return (
        value.startswith(API_KEY_PREFIX)
        and len(body) == API_KEY_RANDOM_LENGTH
        and all(c in API_KEY_ALPHABET for c in body)
    )


def hash_api_key(key: str) -> bytes:
    # The key has 190 bits of entropy: a fast hash is enough, and lets us look it up by hash.
    return hashlib.sha256(key.encode()).digest()


def role_permissions(role: str) -> frozenset[str]:
    return ROLE_PERMISSIONS.get(role, frozenset())
