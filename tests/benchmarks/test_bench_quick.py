"""`python -m benchmarks --quick` end to end: every figure present and well-formed (no timings)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from leak_support import leaks_in

#: Every figure the issue asks for, with its unit; a figure missing from the report is a failure.
EXPECTED = {
    "limits.insert_commits": "rows/s",
    "limits.copy": "rows/s",
    "limits.batched_lease_loop": "jobs/s",
    "limits.engine_sql_lease_loop": "jobs/s",
    "limits.http_empty_quart": "req/s",
    "limits.http_empty_quart_paired": "req/s",
    "limits.http_bare_asgi": "req/s",
    "engine.http_single_submit": "jobs/s",
    "engine.http_single_submit_p50": "ms",
    "engine.http_single_submit_p99": "ms",
    "engine.http_batch_submit": "jobs/s",
    "engine.builtin_workers": "jobs/s",
    "engine.external_workers": "jobs/s",
    "engine.external_workers_batched_ack": "jobs/s",
    "engine.start_latency_p50": "ms",
    "engine.start_latency_p95": "ms",
    "engine.start_latency_p99": "ms",
    "engine.server_rss_per_process": "MB",
    "peers.pgqueuer_enqueue": "jobs/s",
    "peers.pgqueuer_work": "jobs/s",
    "peers.procrastinate_enqueue": "jobs/s",
    "peers.procrastinate_work": "jobs/s",
    "engine.builtin_vs_engine_sql": "jobs/s",
    "engine.worked_vs_procrastinate": "jobs/s",
    "engine.worked_vs_pgqueuer": "jobs/s",
    "engine.batch_submit_vs_pgqueuer_enqueue": "jobs/s",
}
#: The issue's targets: each of these figures carries one and a verdict.
WITH_TARGET = {
    "engine.http_single_submit", "engine.http_batch_submit", "engine.builtin_workers",
    "engine.external_workers", "engine.external_workers_batched_ack",
    "engine.start_latency_p50", "engine.start_latency_p99", "engine.server_rss_per_process",
    "engine.worked_vs_procrastinate", "engine.worked_vs_pgqueuer",
    "engine.batch_submit_vs_pgqueuer_enqueue",
}
BOUND_SECONDS = 240  # the quick run takes well under a minute; this only stops a hang


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", str(out)],
        capture_output=True, text=True, timeout=BOUND_SECONDS, check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text()), done.stdout


@pytest.mark.slow
def test_every_figure_is_present_and_well_formed(bench_report: tuple[dict, str]) -> None:
    report, stdout = bench_report
    figures = {f["name"]: f for f in report["figures"]}
    assert set(EXPECTED) <= set(figures), sorted(set(EXPECTED) - set(figures))
    for name, unit in EXPECTED.items():
        fig = figures[name]
        assert fig["unit"] == unit, name
        assert fig["error"] is None, (name, fig["error"])
        assert isinstance(fig["value"], int | float) and math.isfinite(fig["value"]), name
        assert fig["value"] >= 0, name
        assert isinstance(fig["config"], dict), name
        if fig["limit"] is not None:
            assert fig["limit"] in figures, name
            assert isinstance(fig["ratio"], int | float) and fig["ratio"] >= 0, name
        if name in WITH_TARGET:
            assert fig["target"] is not None and fig["target"]["text"], name
            assert isinstance(fig["met"], bool), name
        # one console line per figure, with its ratio and verdict when it has them
        printed = [ln for ln in stdout.splitlines() if ln.startswith(name + " ")]
        assert len(printed) == 1, name
        if name in WITH_TARGET:
            assert ("met]" in printed[0]) or ("NOT MET]" in printed[0]), printed[0]


@pytest.mark.slow
def test_the_report_says_how_and_where_it_was_measured(bench_report: tuple[dict, str]) -> None:
    report, _ = bench_report
    assert "python -m benchmarks --quick" in report["command"]
    machine = report["machine"]
    assert machine["cores"] >= 1 and len(machine["load_average_at_start"]) == 3
    settings = report["settings"]
    assert settings["plan"] == "quick" and settings["generator"] in ("wrk", "python")
    http = {f["name"]: f for f in report["figures"]}["engine.http_single_submit"]["config"]
    # the load generator's CPU share is reported next to the server's
    assert {"server", "generator"} <= set(http["cpu_core_share"])
    assert Path(report["command"].split()[0]).name in ("python", "nox", "python3")


@pytest.mark.slow
def test_the_report_holds_no_credential(bench_report: tuple[dict, str]) -> None:
    """The server's tokens and API keys the benchmark used stay out of bench.json and its output."""
    report, stdout = bench_report
    assert leaks_in(json.dumps(report), "bench.json") + leaks_in(stdout, "stdout") == []


@pytest.mark.slow
def test_external_workers_report_their_clients_cpu(bench_report: tuple[dict, str]) -> None:
    """The worker clients' own CPU share is measured (they must cost less than the server)."""
    figures = {f["name"]: f for f in bench_report[0]["figures"]}
    for name in ("engine.external_workers", "engine.external_workers_batched_ack"):
        config = figures[name]["config"]
        assert config["worker_clients_cpu_share"] > 0, name
        assert config["cpu"]["worker_clients"] == config["worker_clients_cpu_share"], name
        assert isinstance(config["worker_clients_faster_than_server"], bool), name
