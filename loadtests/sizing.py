"""Sizing validation: do WORKERS, POOL_SIZE and MAX_CONNECTIONS fit the database and the proxy,
and where does the reference stack saturate on this machine (the knee of the sweep)?"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: Connections kept free for migrations, backups, psql and monitoring.
RESERVED_CONNECTIONS = 10
#: A setting is "at the knee" when it reaches this share of the best throughput seen.
KNEE_SHARE = 0.95
#: The guide's hardware targets (2.1).
GUIDE_TARGETS = {
    "minimum": {"cores": 4, "memory_gb": 8},
    "recommended": {"cores": 8, "memory_gb": 16},
}


@dataclass(frozen=True, kw_only=True, slots=True)
class StaticCheck:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SweepPoint:
    workers: int
    pool_size: int
    throughput: float  # requests/s
    p95_ms: float
    error_rate: float


def static_checks(
    *,
    workers: int,
    pool_size: int,
    max_connections: int,
    pg_max_connections: int | None,
    nginx_capacity: int | None = None,
    redis_maxclients: int | None = None,
) -> list[StaticCheck]:
    """Guide 6.4: database connection limits and application workers against the hardware."""
    checks: list[StaticCheck] = []
    needed = workers * pool_size + RESERVED_CONNECTIONS
    if pg_max_connections is not None:
        checks.append(StaticCheck(
            name="pool-fits-postgres",
            passed=needed <= pg_max_connections,
            detail=(f"WORKERS x POOL_SIZE + {RESERVED_CONNECTIONS} reserved = {needed}; "
                    f"PostgreSQL max_connections = {pg_max_connections}"),
        ))
    if nginx_capacity is not None:
        checks.append(StaticCheck(
            name="proxy-fits-app",
            passed=workers * max_connections <= nginx_capacity,
            detail=(f"WORKERS x MAX_CONNECTIONS = {workers * max_connections}; "
                    f"nginx worker_processes x worker_connections = {nginx_capacity}"),
        ))
    if redis_maxclients is not None:
        # Each server process holds one Redis pool bounded by MAX_CONNECTIONS.
        checks.append(StaticCheck(
            name="redis-maxclients",
            passed=workers * max_connections <= redis_maxclients,
            detail=f"WORKERS x MAX_CONNECTIONS = {workers * max_connections}; "
                   f"Redis maxclients = {redis_maxclients}",
        ))
    return checks


def knee(points: list[SweepPoint]) -> SweepPoint:
    """The cheapest setting within KNEE_SHARE of the best throughput (fewest connections)."""
    usable = [p for p in points if p.error_rate < 0.01] or points
    best = max(p.throughput for p in usable)
    good = [p for p in usable if p.throughput >= KNEE_SHARE * best]
    return min(good, key=lambda p: (p.workers * p.pool_size, p.p95_ms))


def recommend(points: list[SweepPoint], *, cores: int | None = None) -> dict[str, object]:
    """Values for this machine and the scaling rule to the guide's hardware targets."""
    cores = cores or os.cpu_count() or 1
    chosen = knee(points)
    workers_per_core = chosen.workers / cores
    targets = {}
    for name, target in GUIDE_TARGETS.items():
        workers = max(1, round(workers_per_core * target["cores"]))
        targets[name] = {
            "cores": target["cores"],
            "WORKERS": workers,
            "POOL_SIZE": chosen.pool_size,
            "postgres_max_connections_needed": workers * chosen.pool_size + RESERVED_CONNECTIONS,
        }
    return {
        "machine_cores": cores,
        "knee": {"WORKERS": chosen.workers, "POOL_SIZE": chosen.pool_size,
                 "throughput": chosen.throughput, "p95_ms": chosen.p95_ms},
        "rule": (f"WORKERS = {workers_per_core:g} x cores; POOL_SIZE = {chosen.pool_size} per "
                 f"process; PostgreSQL max_connections >= WORKERS x POOL_SIZE + "
                 f"{RESERVED_CONNECTIONS}"),
        "guide_targets": targets,
    }
