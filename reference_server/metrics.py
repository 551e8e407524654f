"""Prometheus metrics of the contract; the names are part of the API.

Defined once here so that the engine and the HTTP layer share them. When PROMETHEUS_MULTIPROC_DIR is
set before this module is imported (the serve command does so when WORKERS > 1), prometheus_client
writes per-process files that the metrics endpoint aggregates.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)

JOB_SUBMITTED = Counter(
    "taskforge_job_submitted_total", "Jobs accepted", ["queue", "job_type"]
)
JOB_PROCESSED = Counter(
    "taskforge_job_processed_total",
    "Jobs that finished an attempt",
    ["queue", "job_type", "result"],
)
JOB_PROCESSING_DURATION = Histogram(
    "taskforge_job_processing_duration_seconds",
    "Time from lease to completion",
    ["queue", "job_type"],
    buckets=LATENCY_BUCKETS,
)
JOB_WAIT_DURATION = Histogram(
    "taskforge_job_wait_duration_seconds",
    "Time from due to leased",
    ["queue"],
    buckets=WAIT_BUCKETS,
)
QUEUE_LENGTH = Gauge(
    "taskforge_queue_length",
    "Jobs per queue and status",
    ["queue", "status"],
    multiprocess_mode="livemax",
)
WORKER_ACTIVE_COUNT = Gauge(
    "taskforge_worker_active_count",
    "Workers that sent a heartbeat recently",
    multiprocess_mode="livemax",
)
HTTP_REQUEST_DURATION = Histogram(
    "taskforge_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route", "status_code"],
    buckets=LATENCY_BUCKETS,
)
DB_POOL_CONNECTIONS = Gauge(
    "taskforge_db_pool_connections",
    "asyncpg pool connections by state",
    ["state"],
    multiprocess_mode="livesum",
)
LABELS_FOLDED = Counter(
    "taskforge_metric_labels_folded_total",
    "Label lookups whose new value went to `other`, past the per-process limit (job_metrics.py)",
    ["label"],
)
REDIS_UP = Gauge(
    "taskforge_redis_up", "1 when Redis answered the last probe", multiprocess_mode="livemin"
)
