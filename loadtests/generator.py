"""Run Locust headless as a master with N worker processes, and watch the generator's own CPU.

A load test whose generator saturates measures the generator, not the target; the CPU of every
Locust process is sampled once a second and the run says when it ran hot.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
SATURATED_PERCENT = 90.0  # one Locust process is single-threaded: 90% of a core is its ceiling
GRACE_SECONDS = 60.0  # beyond the profile's duration before the run is stopped


@dataclass(frozen=True, kw_only=True, slots=True)
class GeneratorReport:
    processes: int
    cpu_mean_percent: float  # per Locust process, averaged over samples
    cpu_max_percent: float
    saturated: bool
    exit_code: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _locust(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args]


def run_locust(
    *,
    host: str,
    out_dir: Path,
    stages: list[dict[str, float]],
    mix: dict[str, int],
    api_key: str,
    ca_bundle: Path | None,
    processes: int,
    duration: float,
    remote_workers: int = 0,
    master_bind: tuple[str, int] | None = None,
) -> GeneratorReport:
    """Run one load test; Locust's CSV and HTML files land in out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "TASKFORGE_API_KEY": api_key,
        "TASKFORGE_CA_BUNDLE": str(ca_bundle or ""),
        "TASKFORGE_LOAD_MIX": json.dumps(mix),
        "TASKFORGE_LOAD_STAGES": json.dumps(stages),
    }
    common = ["--headless", "--host", host, "--csv", str(out_dir / "locust"),
              "--csv-full-history", "--html", str(out_dir / "locust.html"),
              "--only-summary", "--loglevel", "WARNING"]
    log = (out_dir / "locust.log").open("ab")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if processes <= 1 and not remote_workers:
            procs.append(subprocess.Popen(_locust(*common), env=env, stdout=log, stderr=log))
        else:
            # Workers on other machines join with Locust's own options:
            # locust -f loadtests/locustfile.py --worker --master-host HOST --master-port PORT
            bind_host, port = master_bind or ("127.0.0.1", free_port())
            procs.append(subprocess.Popen(
                _locust(*common, "--master", "--master-bind-host", bind_host,
                        "--master-bind-port", str(port),
                        "--expect-workers", str(processes + remote_workers)),
                env=env, stdout=log, stderr=log,
            ))
            for _ in range(processes):
                procs.append(subprocess.Popen(
                    _locust("--worker", "--master-host", "127.0.0.1", "--master-port", str(port)),
                    env=env, stdout=log, stderr=log,
                ))
        samples = _watch(procs, deadline=time.monotonic() + duration + GRACE_SECONDS)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
    busy = samples or [0.0]
    return GeneratorReport(
        processes=max(1, processes),
        cpu_mean_percent=round(sum(busy) / len(busy), 1),
        cpu_max_percent=round(max(busy), 1),
        saturated=sum(1 for s in busy if s >= SATURATED_PERCENT) >= max(3, len(busy) // 10),
        exit_code=procs[0].returncode if procs[0].returncode is not None else -1,
    )


def _watch(procs: list[subprocess.Popen[bytes]], *, deadline: float) -> list[float]:
    """Sample each Locust process's CPU once a second until the master exits or time is up."""
    handles = [psutil.Process(p.pid) for p in procs]
    for handle in handles:
        handle.cpu_percent(None)  # the first call only starts the measurement
    samples: list[float] = []
    while procs[0].poll() is None and time.monotonic() < deadline:
        time.sleep(1.0)
        for handle in handles:
            try:
                samples.append(handle.cpu_percent(None))
            except psutil.NoSuchProcess:
                continue
    return samples
