"""The load runner end to end: Locust against the embedded reference stack, thresholds judged."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

PROFILE = """
[profiles.tiny]
description = "a ten-second run for the tests"
server = { WORKERS = 1, POOL_SIZE = 5, MAX_CONNECTIONS = 100 }
mix = { submitter = 3, poller = 2, worker = 1, health = 1 }
stages = [ { until = 2, users = 4, spawn_rate = 4 }, { until = 8, users = 4, spawn_rate = 4 } ]
[profiles.tiny.thresholds]
"POST /api/v1/jobs" = { p99 = 60000 }
error_rate = 0.5
throughput = 1000000000
"""


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loadtests", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_out_of_reach_threshold_fails_the_run_by_name(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(PROFILE)
    result = run("--profile", "tiny", "--profiles-file", str(profiles), "--stack", "embedded",
                 "--processes", "1", "--reports-dir", str(tmp_path / "reports"))
    assert result.returncode == 1, result.stderr[-2000:]
    assert "BREACHED throughput > 1e+09 req/s" in result.stdout
    assert "ok       POST /api/v1/jobs p99 < 60000 ms" in result.stdout
    [load_dir] = (tmp_path / "reports").glob("*/load")
    verdict = json.loads((load_dir / "verdict.json").read_text())
    assert verdict["verdict"] == "FAILED"
    assert verdict["generator"]["processes"] == 1
    stats = (load_dir / "locust_stats.csv").read_text()
    [ack_row] = [line for line in stats.splitlines() if "/api/v1/workers/{id}/ack" in line]
    assert ack_row.split(",")[3] == "0", ack_row  # the external workers' acks: no failures
    for name in ("locust.html", "locust_stats.csv", "throughput-vs-users.png",
                 "latency-over-time.png", "load-report.md"):
        assert (load_dir / name).stat().st_size > 0, name


def test_foreign_target_needs_explicit_opt_in(tmp_path: Path) -> None:
    result = run("--target-url", "https://127.0.0.1:9", "--api-key", "tf_x",
                 "--reports-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--allow-load" in result.stderr


def test_unreachable_target_is_exit_3(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        result = run("--target-url", f"http://127.0.0.1:{port}", "--api-key", "tf_x",
                     "--allow-load", "--reports-dir", str(tmp_path), timeout=60)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("error: ")
