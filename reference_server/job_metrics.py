"""The engine's metric series, looked up once per label set (labels() is costly per job).

The metric definitions themselves live in reference_server/metrics.py.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from reference_server import metrics

#: Bounds the caches; label sets beyond it are looked up each time, still correct.
CACHE_SIZE = 4096


@lru_cache(maxsize=CACHE_SIZE)
def submitted(queue: str, job_type: str) -> Any:
    return metrics.JOB_SUBMITTED.labels(queue, job_type)


@lru_cache(maxsize=CACHE_SIZE)
def processed(queue: str, job_type: str, result: str) -> Any:
    return metrics.JOB_PROCESSED.labels(queue, job_type, result)


@lru_cache(maxsize=CACHE_SIZE)
def processing_duration(queue: str, job_type: str) -> Any:
    return metrics.JOB_PROCESSING_DURATION.labels(queue, job_type)


@lru_cache(maxsize=CACHE_SIZE)
def wait_duration(queue: str) -> Any:
    return metrics.JOB_WAIT_DURATION.labels(queue)
