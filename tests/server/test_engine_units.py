"""Pure pieces of the engine: the named-query loader, the records' API shapes, built-in handlers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from prometheus_client import CollectorRegistry, Histogram

from reference_server import queries
from reference_server.builtin_jobs import BUILTIN_JOB_TYPES, execute, execute_instant
from reference_server.job_metrics import observe_all
from reference_server.models import (
    JobStatus,
    LeasedJob,
    QueueSettings,
    Worker,
    iso,
)


def test_named_blocks_are_parsed() -> None:
    text = "-- file comment\n\n-- name: one\nSELECT 1\n\n-- name: two\n-- why\nSELECT 2;\n"
    assert queries.parse_queries(text) == {"one": "SELECT 1", "two": "-- why\nSELECT 2;"}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("SELECT 1", "no '-- name:' blocks"),
        ("SELECT 0\n-- name: a\nSELECT 1", "SQL before"),
        ("-- name: a\nSELECT 1\n-- name: a\nSELECT 2", "defined twice"),
        ("-- name: a\n\n-- name: b\nSELECT 2", "is empty"),
    ],
)
def test_malformed_query_files_are_refused(text: str, problem: str) -> None:
    with pytest.raises(queries.QueryFileError, match=problem):
        queries.parse_queries(text, source="x.sql")


def test_every_engine_query_is_loaded() -> None:
    loaded = queries.load("jobs.sql")
    for name in ("insert_job", "lease_for_worker", "claim_builtin", "reap_expired_leases"):
        assert loaded[name].strip()


def test_builtin_types_match_the_migrations_list() -> None:
    """The index predicate, the wake-up key and the lease query name the same four types."""
    assert frozenset({"test_job", "echo", "sleep", "fail"}) == BUILTIN_JOB_TYPES
    assert "'test_job', 'echo', 'sleep', 'fail'" in queries.load("jobs.sql")["claim_builtin"]


def test_timestamps_are_utc_with_z() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert iso(datetime(2026, 1, 2, 5, 0, tzinfo=plus_two)) == "2026-01-02T03:00:00Z"
    assert iso(None) is None


def test_queue_settings_merge_and_refuse_unknown_keys() -> None:
    merged = QueueSettings().merged({"max_attempts": 5})
    assert merged.max_attempts == 5 and merged.backoff_multiplier == 2.0
    with pytest.raises(ValueError, match="unknown queue settings: colour"):
        QueueSettings().merged({"colour": "red"})


def test_worker_goes_offline_after_three_silent_intervals() -> None:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def worker(silent_seconds: int) -> Worker:
        return Worker(
            id=uuid4(),
            organization_id=uuid4(),
            name="w",
            queues=["default"],
            max_concurrent_jobs=1,
            heartbeat_interval_seconds=10,
            last_heartbeat_at=now - timedelta(seconds=silent_seconds),
            created_at=now,
            observed_at=now,
        )

    assert worker(30).status == "online"
    assert worker(31).status == "offline"
    assert worker(31).to_api()["status"] == "offline"


def leased(job_type: str, payload: dict[str, object], timeout: int = 5) -> LeasedJob:
    return LeasedJob(uuid4(), "default", job_type, payload, timeout)


def test_instant_handlers() -> None:
    ok = execute_instant(leased("test_job", {"test": "data"}))
    echo = execute_instant(leased("echo", {"a": [1]}))
    fail = execute_instant(leased("fail", {"retryable": False, "message": "no"}))
    assert ok is not None and ok.error is None and '"ok":true' in (ok.output_json or "")
    assert echo is not None and echo.output_json == '{"a":[1]}'
    assert fail is not None and (fail.error, fail.retryable) == ("no", False)
    assert execute_instant(leased("sleep", {})) is None  # waits: not instant


async def test_sleep_handler_checks_its_payload() -> None:
    slept = await execute(leased("sleep", {"seconds": 0}))
    bad = await execute(leased("sleep", {"seconds": "soon"}))
    too_long = await execute(leased("sleep", {"seconds": 10_000}))
    unknown = await execute(leased("resize", {}))
    assert slept.error is None
    assert bad.error is not None and not bad.retryable
    assert too_long.error is not None and not too_long.retryable
    assert unknown.error is not None and not unknown.retryable


def test_job_status_values_are_the_contracts() -> None:
    assert [s.value for s in JobStatus] == [
        "pending",
        "scheduled",
        "processing",
        "succeeded",
        "failed",
        "dead",
        "cancelled",
    ]


def _histogram_samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("le", "")): sample.value
        for metric in histogram.collect()
        for sample in metric.samples
        if not sample.name.endswith("_created")
    }


def test_observe_all_counts_as_observe_does() -> None:
    amounts = [0.0, 0.0004, 0.001, 0.0011, 0.25, 0.5, 2.0, 7.5, 1e9, -1.0, float("nan")]
    one_by_one, together = (
        Histogram(name, "test", ["queue"], buckets=(0.001, 0.01, 0.5, 5.0), registry=registry)
        for name, registry in (("one", CollectorRegistry()), ("all", CollectorRegistry()))
    )
    for amount in amounts:
        one_by_one.labels("q").observe(amount)
    observe_all(together.labels("q"), amounts)

    expected = {
        (k[0].replace("one", "all"), k[1]): v for k, v in _histogram_samples(one_by_one).items()
    }
    found = _histogram_samples(together)
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        if value != value:  # the sums: NaN in both
            assert found[key] != found[key]
        else:
            assert found[key] == pytest.approx(value), key
    assert found[("all_count", "")] == len(amounts) - 1  # NaN lands in no bucket
