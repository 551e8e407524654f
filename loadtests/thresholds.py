"""Read Locust's CSV statistics and evaluate a profile's thresholds against them, as k6 does."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from loadtests.profiles import Thresholds

PERCENTILE_COLUMNS = {"p50": "50%", "p95": "95%", "p99": "99%"}


@dataclass(frozen=True, kw_only=True, slots=True)
class EndpointStats:
    name: str
    requests: int
    failures: int
    rps: float
    percentiles_ms: dict[str, float]


@dataclass(frozen=True, kw_only=True, slots=True)
class RunStats:
    endpoints: dict[str, EndpointStats]  # by name; "all" is Locust's Aggregated row
    pool_exhaustion: int  # 503 responses seen

    @property
    def total(self) -> EndpointStats:
        return self.endpoints["all"]

    @property
    def error_rate(self) -> float:
        return self.total.failures / self.total.requests if self.total.requests else 1.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    threshold: str  # e.g. "POST /api/v1/jobs p95 < 250 ms"
    actual: str
    passed: bool


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0  # Locust writes "N/A" for a percentile it has no sample for


def read_stats(csv_prefix: Path) -> RunStats:
    """Parse `<prefix>_stats.csv` and `<prefix>_failures.csv` as Locust writes them."""
    endpoints: dict[str, EndpointStats] = {}
    with open(f"{csv_prefix}_stats.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            name = "all" if row["Name"] == "Aggregated" else row["Name"]
            endpoints[name] = EndpointStats(
                name=name,
                requests=int(row["Request Count"]),
                failures=int(row["Failure Count"]),
                rps=_number(row["Requests/s"]),
                percentiles_ms={p: _number(row[c]) for p, c in PERCENTILE_COLUMNS.items()},
            )
    if "all" not in endpoints:
        raise ValueError(f"{csv_prefix}_stats.csv has no Aggregated row")
    exhausted = 0
    failures = Path(f"{csv_prefix}_failures.csv")
    if failures.exists():
        with failures.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if "503" in row.get("Error", ""):
                    exhausted += int(row.get("Occurrences", 0))
    return RunStats(endpoints=endpoints, pool_exhaustion=exhausted)


def evaluate(thresholds: Thresholds, stats: RunStats) -> list[Outcome]:
    """One outcome per declared threshold; an endpoint never requested breaches its threshold."""
    outcomes: list[Outcome] = []
    for endpoint, limits in thresholds.latency_ms.items():
        seen = stats.endpoints.get(endpoint)
        for percentile, limit in limits.items():
            label = f"{endpoint} {percentile} < {limit:g} ms"
            if seen is None or seen.requests == 0:
                outcomes.append(Outcome(threshold=label, actual="no requests", passed=False))
                continue
            value = seen.percentiles_ms[percentile]
            outcomes.append(
                Outcome(threshold=label, actual=f"{value:g} ms", passed=value < limit)
            )
    if thresholds.error_rate is not None:
        outcomes.append(
            Outcome(
                threshold=f"error_rate < {thresholds.error_rate:g}",
                actual=f"{stats.error_rate:.4f}",
                passed=stats.error_rate < thresholds.error_rate,
            )
        )
    if thresholds.throughput is not None:
        outcomes.append(
            Outcome(
                threshold=f"throughput > {thresholds.throughput:g} req/s",
                actual=f"{stats.total.rps:.1f} req/s",
                passed=stats.total.rps > thresholds.throughput,
            )
        )
    if thresholds.pool_exhaustion is not None:
        outcomes.append(
            Outcome(
                threshold=f"pool_exhaustion <= {thresholds.pool_exhaustion}",
                actual=str(stats.pool_exhaustion),
                passed=stats.pool_exhaustion <= thresholds.pool_exhaustion,
            )
        )
    return outcomes
