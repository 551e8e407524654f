"""The engine's metric series, looked up once per label set (labels() is costly per job).

The metric definitions themselves live in reference_server/metrics.py.
"""

from __future__ import annotations

import bisect
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from reference_server import metrics

if TYPE_CHECKING:
    from collections.abc import Iterable

#: Bounds the caches; label sets beyond it are looked up each time, still correct.
CACHE_SIZE = 4096
#: Label values kept per process: past these, new values share the label value OTHER (and
#: LABELS_FOLDED counts each lookup that was folded). Members choose job types and queue names
#: freely; 1,500 of them took /metrics to 3.4 MB.
QUEUES_KEPT = 200
JOB_TYPES_PER_QUEUE = 50
OTHER = "other"

_job_types: dict[str, set[str]] = {}


def queue_label(queue: str) -> str:
    if queue in _job_types:
        return queue
    if len(_job_types) < QUEUES_KEPT:
        _job_types[queue] = set()
        return queue
    metrics.LABELS_FOLDED.labels("queue").inc()
    return OTHER


def labels(queue: str, job_type: str) -> tuple[str, str]:
    """The (queue, job_type) label values for these: themselves, or OTHER past the limits."""
    queue = queue_label(queue)
    kept = _job_types.setdefault(queue, set())
    if job_type in kept:
        return queue, job_type
    if len(kept) < JOB_TYPES_PER_QUEUE:
        kept.add(job_type)
        return queue, job_type
    metrics.LABELS_FOLDED.labels("job_type").inc()
    return queue, OTHER


#: Children of label sets kept as they are (never folded ones, whose lookups LABELS_FOLDED
#: counts), keyed by the caller's values: the hot path is one dict hit. Bounded by the limits.
_kept: dict[tuple[str, ...], Any] = {}


def _child(key: tuple[str, ...], folded: tuple[str, ...], make: Any) -> Any:
    child = make(*folded)
    if folded == key:
        _kept[key] = child
    return child


def submitted(queue: str, job_type: str) -> Any:
    key = ("s", queue, job_type)
    child = _kept.get(key)
    if child is None:
        child = _child(key, ("s", *labels(queue, job_type)), lambda _, q, t: _submitted(q, t))
    return child


def processed(queue: str, job_type: str, result: str) -> Any:
    key = ("p", queue, job_type, result)
    child = _kept.get(key)
    if child is None:
        folded = ("p", *labels(queue, job_type), result)
        child = _child(key, folded, lambda _, q, t, r: _processed(q, t, r))
    return child


def processing_duration(queue: str, job_type: str) -> Any:
    key = ("d", queue, job_type)
    child = _kept.get(key)
    if child is None:
        folded = ("d", *labels(queue, job_type))
        child = _child(key, folded, lambda _, q, t: _processing_duration(q, t))
    return child


def wait_duration(queue: str) -> Any:
    key = ("w", queue)
    child = _kept.get(key)
    if child is None:
        child = _child(key, ("w", queue_label(queue)), lambda _, q: _wait_duration(q))
    return child


@lru_cache(maxsize=CACHE_SIZE)
def _submitted(queue: str, job_type: str) -> Any:
    return metrics.JOB_SUBMITTED.labels(queue, job_type)


@lru_cache(maxsize=CACHE_SIZE)
def _processed(queue: str, job_type: str, result: str) -> Any:
    return metrics.JOB_PROCESSED.labels(queue, job_type, result)


@lru_cache(maxsize=CACHE_SIZE)
def _processing_duration(queue: str, job_type: str) -> Any:
    return metrics.JOB_PROCESSING_DURATION.labels(queue, job_type)


@lru_cache(maxsize=CACHE_SIZE)
def _wait_duration(queue: str) -> Any:
    return metrics.JOB_WAIT_DURATION.labels(queue)


def observe_all(histogram: Any, amounts: Iterable[float]) -> None:
    """histogram.observe(amount) for every amount, at one increment per bucket touched.

    A batch of 250 jobs made 500 observe() calls, each a walk of the bucket bounds and two locked
    increments: a quarter of the built-in pool's Python time. This reads prometheus_client's
    Histogram layout (bounds, bucket values, sum); without it, it observes one by one.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for amount in amounts:
            histogram.observe(amount)
        return
    counts: Counter[int] = Counter()
    added = 0.0
    for amount in amounts:
        if amount != amount:  # NaN: observe() counts it in no bucket
            histogram.observe(amount)
            continue
        counts[bisect.bisect_left(bounds, amount)] += 1  # the first bound >= amount
        added += amount
    if counts:
        total.inc(added)
        for index, n in counts.items():
            buckets[index].inc(n)
