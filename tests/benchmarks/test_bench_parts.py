"""The benchmark's parts alone: ratios and verdicts, the Python load generator, wrk's script."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from benchmarks import loadgen, report
from benchmarks.report import Figure, Target, TargetKind


def _figures(**values: float | None) -> list[Figure]:
    return [
        Figure(name="limit", value=values.get("limit"), unit="x/s", group="limits"),
        Figure(name="ratio", value=values.get("ratio"), unit="x/s", group="engine", limit="limit",
               target=Target(kind=TargetKind.MIN_RATIO, value=0.5, text=">= 0.5")),
        Figure(name="cap", value=values.get("cap"), unit="ms", group="engine",
               target=Target(kind=TargetKind.MAX_VALUE, value=5.0, text="<= 5")),
        Figure(name="beat", value=values.get("beat"), unit="x/s", group="derived", limit="limit",
               target=Target(kind=TargetKind.MIN_VALUE, value=1.0, text="> limit")),
    ]


def test_ratio_and_verdicts() -> None:
    figures = _figures(limit=100, ratio=60, cap=5, beat=101)
    met = {e.figure.name: e for e in report.evaluate(figures)}
    assert met["ratio"].ratio == pytest.approx(0.6) and met["ratio"].met is True
    assert met["cap"].met is True and met["cap"].ratio is None
    assert met["beat"].met is True
    missed = {e.figure.name: e for e in report.evaluate(_figures(limit=100, ratio=40, cap=5.1,
                                                                 beat=100))}
    assert missed["ratio"].met is False and missed["cap"].met is False
    assert missed["beat"].met is False
    assert "NOT MET" in report.line(missed["ratio"])


def test_a_missing_value_is_unknown_not_met() -> None:
    ev = {e.figure.name: e for e in report.evaluate(_figures(limit=None, ratio=60, cap=None))}
    assert ev["ratio"].ratio is None and ev["ratio"].met is None
    assert ev["cap"].met is None
    assert report.record(ev["ratio"])["met"] is None


def test_lua_strings_survive_brackets() -> None:
    text = 'a "quoted" ]] and ]=] body'
    quoted = loadgen._lua_string(text)
    level = quoted.index("[", 1)
    assert quoted[level + 1 : -level - 1] == text


@pytest.fixture
def bare_asgi_url() -> Iterator[str]:
    from reference_server.devservices import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.apps", "asgi", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert proc.poll() is None, "the bare ASGI app exited"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/api/v1/jobs"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_python_generator_counts_answers_and_its_cpu(bare_asgi_url: str) -> None:
    result = loadgen.run_python(bare_asgi_url, method="POST", body=b'{"a": 1}',
                                headers={"X-Test": "1"}, connections=4, processes=2,
                                seconds=0.5, prefix=[])
    assert result.tool == "python" and result.errors == 0
    assert result.ok > 0 and result.detail["statuses"] == {"200": result.ok}
    assert set(result.latency_ms) == {"p50", "p95", "p99", "max"}
    assert result.generator_cpu_seconds > 0


def test_python_generator_paces_an_open_loop(bare_asgi_url: str) -> None:
    result = loadgen.run_python(bare_asgi_url, method="POST", body=b"{}", headers={},
                                connections=4, processes=1, seconds=1.0, prefix=[], rate=20)
    # paced at 20/s for 1 s: about 20 requests, never the hundreds a closed loop would send
    assert 0 < result.ok <= 24


@pytest.mark.skipif(not loadgen.wrk_available(), reason="wrk is not installed")
def test_wrk_sends_the_body_and_headers(bare_asgi_url: str) -> None:
    result = loadgen.run_wrk(bare_asgi_url, method="POST", body=b'{"x": "]]"}',
                             headers={"Authorization": "Bearer t"}, connections=2, threads=1,
                             seconds=1, prefix=[])
    assert result.tool == "wrk" and result.ok > 0 and result.errors == 0


def test_services_are_pinned_for_a_phase_and_let_go_after(redis_url: str) -> None:
    import os
    from urllib.parse import urlparse

    from benchmarks.system import pinned, redis_pids

    everyone = os.sched_getaffinity(0)
    port = urlparse(redis_url).port
    assert port is not None
    roots = redis_pids(port)
    assert len(roots) == 1
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        core = min(everyone)
        with pinned([*roots, sleeper.pid], (core,)):
            assert os.sched_getaffinity(roots[0]) == {core}
            assert os.sched_getaffinity(sleeper.pid) == {core}
        assert os.sched_getaffinity(roots[0]) == everyone
        assert os.sched_getaffinity(sleeper.pid) == everyone
    finally:
        sleeper.kill()
        sleeper.wait()


def test_paired_rounds_sum_counts_and_take_median_percentiles() -> None:
    from benchmarks.loadgen import LoadResult
    from benchmarks.server import _merged

    def result(ok: int, errors: int, seconds: float, p50: float) -> LoadResult:
        return LoadResult("wrk", ok=ok, errors=errors, seconds=seconds, latency_ms={"p50": p50})

    rounds = [
        (result(100, 0, 1.0, 1.0), {"server": 1.0}),
        (result(300, 2, 1.0, 3.0), {"server": 0.5}),
        (result(200, 0, 2.0, 9.0), {"server": 0.9}),
    ]
    merged, shares = _merged(rounds)
    assert (merged.ok, merged.errors, merged.seconds) == (600, 2, 4.0)
    assert merged.rate == 150.0
    assert merged.latency_ms == {"p50": 3.0}
    assert shares == {"server": 0.9}
    assert merged.detail["rounds"] == 3
