"""How much each phase does: the full run and the --quick one (CI: checks it runs, not timings)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Plan:
    # limits
    insert_concurrency: int = 16
    insert_seconds: float = 5.0
    insert_max_rows: int = 200_000
    copy_rows: int = 100_000
    loop_jobs: int = 100_000
    loop_batch: int = 100
    loop_count: int = 4
    # HTTP
    http_seconds: float = 5.0
    warmup_seconds: float = 2.0  # of the same load, before each closed-loop HTTP measurement
    http_connections: int = 32
    #: Single submits alternate with the empty Quart endpoint in this many rounds of
    #: http_seconds / 2 each side (the paired figure the 0.7 target is judged on).
    paired_rounds: int = 4
    batch_connections: int = 4
    batch_size: int = 1000
    server_workers: int = 1
    # engine
    builtin_jobs: int = 20_000
    external_jobs: int = 10_000
    external_seconds: float = 30.0  # the workers stop then, done or not (figure: done / time)
    external_workers: int = 2
    external_connections: int = 8
    external_max_jobs: int = 100
    latency_seconds: float = 5.0
    latency_connections: int = 64
    # peers: the same number of jobs as the built-in workers get
    peer_seconds: float = 30.0
    # every phase's bound, beyond its own count or duration
    phase_timeout_seconds: float = 120.0

    @property
    def peer_jobs(self) -> int:
        return self.builtin_jobs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"peer_jobs": self.peer_jobs}


FULL = Plan()
QUICK = Plan(
    insert_seconds=1.0, insert_max_rows=20_000, copy_rows=10_000, loop_jobs=5_000,
    http_seconds=1.0, warmup_seconds=1.0, http_connections=16, paired_rounds=2,
    batch_connections=2, batch_size=200,
    builtin_jobs=1_000, external_jobs=500, external_seconds=10.0,
    latency_seconds=1.0, latency_connections=16,
    peer_seconds=2.0, phase_timeout_seconds=30.0,
)
