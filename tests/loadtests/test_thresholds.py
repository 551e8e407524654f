"""Thresholds are read from Locust's CSV files and evaluated the way k6 does."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from loadtests.profiles import ProfileError, Thresholds, load_profile, load_sweep
from loadtests.sizing import SweepPoint, knee, recommend, static_checks
from loadtests.thresholds import evaluate, read_stats

HEADER = ["Type", "Name", "Request Count", "Failure Count", "Median Response Time",
          "Average Response Time", "Min Response Time", "Max Response Time",
          "Average Content Size", "Requests/s", "Failures/s", "50%", "66%", "75%", "80%",
          "90%", "95%", "98%", "99%", "99.9%", "99.99%", "100%"]


def write_stats(prefix: Path, rows: list[tuple[str, str, int, int, float, float, float, float]],
                failures: list[tuple[str, str, str, int]] = ()) -> None:  # type: ignore[assignment]
    with open(f"{prefix}_stats.csv", "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(HEADER)
        for kind, name, count, failed, rps, p50, p95, p99 in rows:
            out.writerow([kind, name, count, failed, p50, p50, 1, p99, 10, rps, 0, p50, p50,
                          p50, p50, p95, p95, p99, p99, p99, p99, p99])
    with open(f"{prefix}_failures.csv", "w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["Method", "Name", "Error", "Occurrences"])
        out.writerows(failures)


def test_breached_latency_threshold_is_named(tmp_path: Path) -> None:
    write_stats(tmp_path / "locust", [
        ("POST", "POST /api/v1/jobs", 100, 0, 50.0, 20, 300, 400),
        ("", "Aggregated", 100, 0, 50.0, 20, 300, 400),
    ])
    thresholds = Thresholds(latency_ms={"POST /api/v1/jobs": {"p95": 250, "p99": 1000}})
    outcomes = evaluate(thresholds, read_stats(tmp_path / "locust"))
    assert [(o.threshold, o.passed) for o in outcomes] == [
        ("POST /api/v1/jobs p95 < 250 ms", False),
        ("POST /api/v1/jobs p99 < 1000 ms", True),
    ]


def test_error_rate_throughput_and_pool_exhaustion(tmp_path: Path) -> None:
    write_stats(
        tmp_path / "locust",
        [("", "Aggregated", 1000, 30, 12.5, 10, 20, 30)],
        [("POST", "POST /api/v1/jobs", "503: SERVICE_UNAVAILABLE", 7),
         ("GET", "GET /health", "ConnectionRefused", 23)],
    )
    stats = read_stats(tmp_path / "locust")
    assert stats.pool_exhaustion == 7
    outcomes = {o.threshold: o.passed for o in evaluate(
        Thresholds(latency_ms={}, error_rate=0.01, throughput=10, pool_exhaustion=0), stats)}
    assert outcomes == {"error_rate < 0.01": False, "throughput > 10 req/s": True,
                        "pool_exhaustion <= 0": False}


def test_endpoint_without_requests_breaches(tmp_path: Path) -> None:
    write_stats(tmp_path / "locust", [("", "Aggregated", 10, 0, 1.0, 1, 2, 3)])
    [outcome] = evaluate(Thresholds(latency_ms={"GET /health": {"p95": 100}}),
                         read_stats(tmp_path / "locust"))
    assert not outcome.passed and outcome.actual == "no requests"


def test_shipped_profiles_parse() -> None:
    for name in ("smoke", "minimum", "recommended"):
        profile = load_profile(name)
        assert profile.stages and profile.thresholds.latency_ms
    assert profile.server == {"WORKERS": 4, "POOL_SIZE": 20, "MAX_CONNECTIONS": 100}
    assert load_sweep().pool_sizes


def test_bad_profile_file_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('[profiles.x]\nmix = { robots = 1 }\nstages = [{ until = 1, users = 1, '
                   'spawn_rate = 1 }]\n')
    with pytest.raises(ProfileError, match="unknown user kinds") as exc:
        load_profile("x", bad)
    assert "\n" not in str(exc.value)
    with pytest.raises(ProfileError, match="no profile 'nope'"):
        load_profile("nope", bad)


def test_capped_profile_respects_caps() -> None:
    capped = load_profile("minimum").capped(max_users=10, max_seconds=30)
    assert capped.peak_users <= 10 and capped.duration <= 30


def test_static_sizing_against_postgres_max_connections() -> None:
    guide = static_checks(workers=4, pool_size=20, max_connections=100, pg_max_connections=100)
    assert [c.passed for c in guide] == [True]  # 4 x 20 + 10 = 90 <= 100
    too_big = static_checks(workers=8, pool_size=20, max_connections=100, pg_max_connections=100)
    assert [c.passed for c in too_big] == [False]


def test_knee_takes_the_cheapest_setting_near_the_best() -> None:
    points = [SweepPoint(workers=w, pool_size=p, throughput=t, p95_ms=10, error_rate=0)
              for w, p, t in [(1, 2, 500), (1, 5, 900), (1, 10, 960), (2, 5, 1000),
                              (2, 10, 990)]]
    chosen = knee(points)
    assert (chosen.workers, chosen.pool_size) == (1, 10)  # 960 >= 95% of 1000, 10 connections
    rec = recommend(points, cores=2)
    assert rec["guide_targets"]["minimum"]["WORKERS"] == 2  # 0.5 workers per core x 4 cores
