"""Audit rows: what a mutating API call did, written with the change it records where possible.

The rows of concurrent requests go in one statement (accounts' group commit); a submitted job's row
goes in the job's own transaction (group_commit.submit_writer), so no job exists without it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reference_server import queries

if TYPE_CHECKING:
    import asyncpg


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEntry:
    actor: str
    organization_id: uuid.UUID | None
    action: str
    target: str | None
    source_ip: str | None
    request_id: str
    status_code: int


def with_outcome(entry: AuditEntry, *, target: str | None, status_code: int) -> AuditEntry:
    """The entry once its request's outcome is known (dataclasses.replace costs 5x this)."""
    return AuditEntry(
        actor=entry.actor,
        organization_id=entry.organization_id,
        action=entry.action,
        target=target,
        source_ip=entry.source_ip,
        request_id=entry.request_id,
        status_code=status_code,
    )


async def insert_audits(
    conn: asyncpg.Connection | asyncpg.Pool, entries: Sequence[AuditEntry]
) -> None:
    """The rows in one statement, in the entries' order."""
    await conn.execute(
        queries.load("accounts.sql")["insert_audit_grouped"],
        [e.actor for e in entries],
        [e.organization_id for e in entries],
        [e.action for e in entries],
        [e.target for e in entries],
        [e.source_ip for e in entries],
        [e.request_id for e in entries],
        [e.status_code for e in entries],
    )
