"""The machine: cores, pinning of server and load generator, CPU and RSS of process trees."""

from __future__ import annotations

import contextlib
import os
import platform
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psutil


@dataclass(frozen=True)
class Placement:
    """Which cores the server (and the peers) get, and which the load generator gets."""

    server: tuple[int, ...]
    generator: tuple[int, ...]

    @property
    def pinned(self) -> bool:
        return bool(self.server) and bool(self.generator)

    def taskset(self, role: str) -> list[str]:
        """The `taskset -c` prefix of a command of this role, or nothing when not pinned."""
        cores = self.server if role == "server" else self.generator
        if not self.pinned or not cores:
            return []
        return ["taskset", "-c", ",".join(str(c) for c in cores)]


def placement(enabled: bool = True) -> Placement:
    """The first half of our cores for the server, the rest for the generator (2+ cores)."""
    cores = sorted(os.sched_getaffinity(0))
    if not enabled or len(cores) < 2:
        return Placement((), ())
    half = max(1, len(cores) // 2)
    return Placement(tuple(cores[:half]), tuple(cores[half:]))


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "hostname": platform.node(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "load_average_at_start": [round(x, 2) for x in load],
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def tree(pid: int) -> list[psutil.Process]:
    """A process and its descendants (Granian's workers, say); gone ones are left out."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    out: dict[int, float] = {}
    for proc in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = proc.cpu_times()
            out[proc.pid] = t.user + t.system
    return out


@dataclass
class CpuWindow:
    """CPU seconds spent by process trees between start() and stop(), as a share of one core."""

    roots: dict[str, list[int]]
    _before: dict[str, dict[int, float]] = field(default_factory=dict)
    _procs: dict[str, list[psutil.Process]] = field(default_factory=dict)
    _started: float = 0.0

    def start(self) -> None:
        self._started = time.perf_counter()
        for role, pids in self.roots.items():
            procs = [p for pid in pids for p in tree(pid)]
            self._procs[role] = procs
            self._before[role] = cpu_seconds(procs)

    def add(self, role: str, pid: int) -> None:
        """A process that started after start() (a generator process): counted from zero."""
        procs = tree(pid)
        self._procs.setdefault(role, []).extend(procs)
        self._before.setdefault(role, {}).update({p.pid: 0.0 for p in procs})

    def stop(self) -> dict[str, float]:
        """Core shares by role (1.0 = one core busy the whole window)."""
        wall = max(1e-9, time.perf_counter() - self._started)
        shares: dict[str, float] = {}
        for role, procs in self._procs.items():
            after = cpu_seconds(procs)
            spent = sum(max(0.0, after.get(pid, 0.0) - before)
                        for pid, before in self._before[role].items() if pid in after)
            shares[role] = round(spent / wall, 3)
        return shares


def postgres_pids(port: int) -> list[int]:
    """The PostgreSQL postmaster listening on this port (its backends are its children)."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            cmd = proc.info["cmdline"] or []
            if cmd and cmd[0].endswith("postgres") and str(port) in cmd:
                return [proc.pid]
    return []


def redis_pids(port: int) -> list[int]:
    """The redis-server listening on this port."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            cmd = " ".join(proc.info["cmdline"] or [])
            if "redis-server" in cmd and (f":{port}" in cmd or f"--port {port}" in cmd):
                return [proc.pid]
    return []


@contextlib.contextmanager
def pinned(roots: list[int], cores: tuple[int, ...]) -> Iterator[None]:
    """Keep these process trees (PostgreSQL, Redis) on `cores` for a phase, then let them go.

    Processes they start meanwhile (a PostgreSQL backend per new connection) inherit it.
    """
    if not cores:
        yield
        return
    before: dict[int, set[int]] = {}
    for proc in (p for root in roots for p in tree(root)):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            before[proc.pid] = os.sched_getaffinity(proc.pid)
            os.sched_setaffinity(proc.pid, set(cores))
    try:
        yield
    finally:
        everyone = set(os.sched_getaffinity(0))
        for proc in (p for root in roots for p in tree(root)):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, OSError):
                os.sched_setaffinity(proc.pid, before.get(proc.pid, everyone))


class RssSampler:
    """The largest RSS of each process of a tree, sampled every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self._pid = pid
        self._interval = interval
        self._peak: dict[int, int] = {}
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sample(self) -> None:
        for proc in tree(self._pid):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                rss = proc.memory_info().rss
                self._peak[proc.pid] = max(rss, self._peak.get(proc.pid, 0))
                self._names.setdefault(proc.pid, " ".join(proc.cmdline()[:4])[:80])

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    @property
    def peak_mb(self) -> float | None:
        return max(self._peak.values()) / 2**20 if self._peak else None

    def per_process_mb(self) -> dict[str, float]:
        return {f"{pid} {self._names.get(pid, '')}": round(rss / 2**20, 1)
                for pid, rss in sorted(self._peak.items())}
