"""Organisations, users, API keys and the audit log (queries in sql/accounts.sql).

Registration creates the organisation, its admin and its `default` queue in one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from reference_server import queries as named_queries
from reference_server.audit import AuditEntry, insert_audits
from reference_server.dbpool import database_unavailable
from reference_server.exceptions import Conflict, NotFound
from reference_server.group_commit import GroupCommit, Pending
from reference_server.models import iso
from reference_server.security import (
    API_KEY_SHOWN_PREFIX,
    Principal,
    generate_api_key,
    hash_api_key,
    role_permissions,
)

if TYPE_CHECKING:
    from reference_server.engine import Engine


def queries() -> Mapping[str, str]:
    return named_queries.load("accounts.sql")


@dataclass(frozen=True, kw_only=True, slots=True)
class User:
    id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    role: str
    password_hash: str | None = None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> User:
        return cls(
            id=row["id"],
            organization_id=row["organization_id"],
            email=row["email"],
            role=row["role"],
            password_hash=row.get("password_hash"),
        )

    @property
    def permissions(self) -> frozenset[str]:
        return role_permissions(self.role)


@dataclass(frozen=True, kw_only=True, slots=True)
class ApiKey:
    id: uuid.UUID
    name: str
    key_prefix: str
    permissions: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> ApiKey:
        return cls(
            id=row["id"],
            name=row["name"],
            key_prefix=row["key_prefix"],
            permissions=list(row["permissions"]),
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            last_used_at=row["last_used_at"],
            created_at=row["created_at"],
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "prefix": self.key_prefix,
            "permissions": sorted(self.permissions),
            "expires_at": iso(self.expires_at),
            "revoked": self.revoked_at is not None,
            "revoked_at": iso(self.revoked_at),
            "last_used_at": iso(self.last_used_at),
            "created_at": iso(self.created_at),
        }


class AccountStore:
    """Account data of every organisation; each method is scoped by the caller's organisation."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # Every mutating request writes an audit row: concurrent ones share one INSERT and one
        # commit instead of a commit (and a pooled connection) each.
        self._audits: GroupCommit[AuditEntry, None] = GroupCommit(
            self._write_audits, fails_queue=database_unavailable
        )

    async def register(
        self, *, email: str, password_hash: str, organization_name: str, engine: Engine
    ) -> User:
        q = queries()
        async with self.pool.acquire() as conn, conn.transaction():
            org_id = await conn.fetchval(q["insert_organization"], organization_name)
            try:
                user_id = await conn.fetchval(
                    q["insert_user"], org_id, email, password_hash, "admin"
                )
            except asyncpg.UniqueViolationError:
                raise Conflict("an account with this email exists") from None
            await engine.create_default_queue(org_id, conn)
        return User(id=user_id, organization_id=org_id, email=email, role="admin")

    async def user_by_email(self, email: str) -> User | None:
        row = await self.pool.fetchrow(queries()["user_by_email"], email)
        return User.from_row(row) if row is not None else None

    async def get_user(self, org_id: uuid.UUID, user_id: uuid.UUID) -> User | None:
        row = await self.pool.fetchrow(queries()["user_by_id"], user_id, org_id)
        return User.from_row(row) if row is not None else None

    async def create_api_key(
        self,
        org_id: uuid.UUID,
        *,
        user_id: uuid.UUID,
        name: str,
        permissions: list[str],
        expires_at: datetime | None,
    ) -> tuple[ApiKey, str]:
        """A new key; the plain key is returned once and only its SHA-256 is stored."""
        key = generate_api_key()
        row = await self.pool.fetchrow(
            queries()["insert_api_key"],
            org_id,
            user_id,
            name,
            key[:API_KEY_SHOWN_PREFIX],
            hash_api_key(key),
            sorted(set(permissions)),
            expires_at,
        )
        assert row is not None
        return ApiKey.from_row(row), key

    async def list_api_keys(self, org_id: uuid.UUID) -> list[ApiKey]:
        rows = await self.pool.fetch(queries()["list_api_keys"], org_id)
        return [ApiKey.from_row(r) for r in rows]

    async def revoke_api_key(self, org_id: uuid.UUID, key_id: uuid.UUID) -> None:
        found = await self.pool.fetchval(queries()["revoke_api_key"], key_id, org_id)
        if found is None:
            raise NotFound("API key not found")

    async def find_api_key(self, key_hash: bytes) -> Principal | None:
        """The principal of a live (unrevoked, unexpired) key with this hash."""
        row = await self.pool.fetchrow(queries()["api_key_by_hash"], key_hash)
        if row is None:
            return None
        if row["touch_due"]:
            await self.pool.execute(queries()["touch_api_key"], row["id"])
        return Principal(
            kind="api_key",
            user_id=row["user_id"],
            organization_id=row["organization_id"],
            permissions=frozenset(row["permissions"]) & role_permissions(row["role"]),
            credential_id=str(row["id"]),
            expires_at=row["expires_at"],
            api_key_id=row["id"],
        )

    async def audit(self, entry: AuditEntry) -> None:
        """Write the row; returns once it is committed (group-committed with concurrent ones)."""
        await self._audits.run(entry)

    async def _write_audits(self, batch: list[Pending[AuditEntry, None]]) -> None:
        entries = [p.item for p in batch]
        try:
            await insert_audits(self.pool, entries)
        except Exception as exc:
            if database_unavailable(exc):
                raise  # each row alone would wait for the database again: fail them together
            if len(batch) == 1:
                batch[0].reject(exc)
                return
            # One unstorable row must not cost the others theirs: write each alone.
            for pending in batch:
                await self._write_audits([pending])
            return
        for pending in batch:
            pending.resolve(None)

    async def queue_lengths(self) -> list[tuple[str, str, int]]:
        rows = await self.pool.fetch(queries()["queue_lengths"])
        return [(r["queue_name"], r["status"], int(r["n"])) for r in rows]

    async def active_workers(self) -> int:
        return int(await self.pool.fetchval(queries()["active_workers"]) or 0)
