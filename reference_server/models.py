"""Domain records of the job service: jobs, queues and workers as the API shows them.

Frozen, keyword-only, slotted dataclasses built from database rows with `from_row()`; `to_api()`
gives the JSON-ready shape of the contract (UUIDs and timestamps as strings, UTC ISO-8601).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol
from uuid import UUID

import orjson

if TYPE_CHECKING:
    from collections.abc import Mapping

#: A worker silent for this many heartbeat intervals is shown as offline (contract).
OFFLINE_AFTER_INTERVALS = 3


class JobStatus(StrEnum):
    PENDING = "pending"
    SCHEDULED = "scheduled"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"
    CANCELLED = "cancelled"


#: Faster than calling the enum on every row read.
_STATUS_BY_VALUE = {status.value: status for status in JobStatus}

#: States a job may still leave on its own (a queue holding one of these cannot be deleted).
UNFINISHED_STATUSES = frozenset(
    {JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.PROCESSING, JobStatus.FAILED}
)


def iso(value: datetime | None) -> str | None:
    """A timestamp as the API writes it: UTC, ISO-8601, `Z` suffix."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.tzinfo is not UTC:  # asyncpg hands back UTC already: no conversion then
        value = value.astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


def utc_in_range(value: datetime) -> datetime:
    """`value` in UTC; ValueError when that leaves years 1-9999 (the contract's bound, and the
    range a stored timestamp must stay in to be read back into Python at all)."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must lie within years 1-9999 once converted to UTC") from None


def json_value(value: Any) -> Any:
    """A JSONB column as Python data, whether or not the pool has a JSON codec installed."""
    if isinstance(value, str | bytes):
        return orjson.loads(value)
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueSettings:
    max_attempts: int = 3
    timeout_seconds: int = 300
    initial_retry_delay_seconds: float = 1.0
    max_retry_delay_seconds: float = 300.0
    backoff_multiplier: float = 2.0
    retention_days: int = 30

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return _SETTINGS_NAMES

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> QueueSettings:
        return cls(**{name: row[name] for name in cls.names()})

    def merged(self, changes: Mapping[str, Any] | None) -> QueueSettings:
        """These settings with `changes` applied; unknown keys are a programming error."""
        if not changes:
            return self
        unknown = set(changes) - set(self.names())
        if unknown:
            raise ValueError(f"unknown queue settings: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def to_api(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.names()}


_SETTINGS_NAMES = tuple(f.name for f in dataclasses.fields(QueueSettings))


@dataclass(frozen=True, kw_only=True, slots=True)
class Queue:
    id: UUID
    organization_id: UUID
    name: str
    description: str | None
    priority: int
    settings: QueueSettings
    paused: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Queue:
        return cls(
            id=row["id"],
            organization_id=row["organization_id"],
            name=row["name"],
            description=row["description"],
            priority=row["priority"],
            settings=QueueSettings.from_row(row),
            paused=row["paused"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "description": self.description,
            "priority": self.priority,
            "settings": self.settings.to_api(),
            "paused": self.paused,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Job:
    id: UUID
    organization_id: UUID
    queue_id: UUID
    queue_name: str
    job_type: str
    payload: dict[str, Any]
    priority: int
    status: JobStatus
    attempt_count: int
    max_attempts: int
    timeout_seconds: int
    scheduled_for: datetime
    lease_expires_at: datetime | None
    worker_id: UUID | None
    output: Any
    error_message: str | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    started_at: datetime | None = None
    seq: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        return cls(
            id=row["id"],
            organization_id=row["organization_id"],
            queue_id=row["queue_id"],
            queue_name=row["queue_name"],
            job_type=row["job_type"],
            payload=json_value(row["payload"]),
            priority=row["priority"],
            status=_STATUS_BY_VALUE[row["status"]],
            attempt_count=row["attempt_count"],
            max_attempts=row["max_attempts"],
            timeout_seconds=row["timeout_seconds"],
            scheduled_for=row["scheduled_for"],
            lease_expires_at=row["lease_expires_at"],
            worker_id=row["worker_id"],
            output=json_value(row["output"]),
            error_message=row["error_message"],
            idempotency_key=row["idempotency_key"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            completed_at=row["completed_at"],
            started_at=row["started_at"],
            seq=row["seq"],
        )

    def to_api(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "queue_name": self.queue_name,
            "job_type": self.job_type,
            "payload": self.payload,
            "priority": self.priority,
            "status": self.status.value,
            "attempt_count": self.attempt_count,
            "max_attempts": self.max_attempts,
            "scheduled_for": iso(self.scheduled_for),
            "lease_expires_at": iso(self.lease_expires_at),
            "worker_id": str(self.worker_id) if self.worker_id else None,
            "output": self.output,
            "error_message": self.error_message,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "completed_at": iso(self.completed_at),
        }


class LeasedJob(NamedTuple):
    """The slice of a job the built-in pool needs: cheap to build for thousands per second."""

    id: UUID
    queue_name: str
    job_type: str
    payload: dict[str, Any]
    timeout_seconds: int
    #: Whose job it is: the pool holds each organisation to a fair share.
    organization_id: UUID | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LeasedJob:
        return cls(
            row["id"],
            row["queue_name"],
            row["job_type"],
            json_value(row["payload"]),
            row["timeout_seconds"],
            row["organization_id"],
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Worker:
    id: UUID
    organization_id: UUID
    name: str
    queues: list[str]
    max_concurrent_jobs: int
    heartbeat_interval_seconds: int
    last_heartbeat_at: datetime
    created_at: datetime
    active_jobs: int = 0
    #: When the row was read; the status is judged against the database's clock, not ours.
    observed_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Worker:
        return cls(
            id=row["id"],
            organization_id=row["organization_id"],
            name=row["name"],
            queues=list(row["queues"]),
            max_concurrent_jobs=row["max_concurrent_jobs"],
            heartbeat_interval_seconds=row["heartbeat_interval_seconds"],
            last_heartbeat_at=row["last_heartbeat_at"],
            created_at=row["created_at"],
            active_jobs=row.get("active_jobs") or 0,
            observed_at=row.get("observed_at"),
        )

    @property
    def status(self) -> str:
        now = self.observed_at or datetime.now(UTC)
        silent_for = now - self.last_heartbeat_at
        limit = timedelta(seconds=OFFLINE_AFTER_INTERVALS * self.heartbeat_interval_seconds)
        return "online" if silent_for <= limit else "offline"

    def to_api(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "queues": self.queues,
            "max_concurrent_jobs": self.max_concurrent_jobs,
            "heartbeat_interval_seconds": self.heartbeat_interval_seconds,
            "last_heartbeat_at": iso(self.last_heartbeat_at),
            "status": self.status,
            "active_jobs": self.active_jobs,
            "created_at": iso(self.created_at),
        }


class JobFields(Protocol):
    """What a submit reads of a job to insert: a JobSpec, or any record with the same fields (the
    batch endpoint hands its validated items over as they are, not copied into JobSpecs)."""

    @property
    def queue_name(self) -> str: ...
    @property
    def job_type(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def priority(self) -> int: ...
    @property
    def max_attempts(self) -> int | None: ...
    @property
    def scheduled_for(self) -> datetime | None: ...
    @property
    def timeout_seconds(self) -> int | None: ...
    @property
    def idempotency_key(self) -> str | None: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class JobSpec:
    """What a client submits; bounds are checked by the HTTP layer and backed by the DB CHECKs."""

    queue_name: str
    job_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int | None = None
    scheduled_for: datetime | None = None
    timeout_seconds: int | None = None
    idempotency_key: str | None = None
