"""HTTP load for the benchmark: wrk when installed, else our own multi-process generator.

The generator is `python -m benchmarks.loadgen http|worker ...`: raw asyncio HTTP/1.1 keep-alive
connections, one JSON result line on stdout. The caller runs several processes of it, pinned to
the generator's cores, and measures their CPU share next to the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from benchmarks.exits import ExitStatus

#: Latency samples a generator process reports at most (evenly thinned beyond that).
MAX_SAMPLES = 20_000
RESULT_PREFIX = "BENCH_JSON "
CONNECT_TIMEOUT_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 30.0


@dataclass
class LoadResult:
    """What a load phase did: requests answered 2xx, the others, and latency percentiles."""

    tool: str
    ok: int
    errors: int
    seconds: float
    latency_ms: dict[str, float] = field(default_factory=dict)
    generator_cpu_seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": round(ordered[-1], 3)}


def children_cpu_seconds() -> float:
    """CPU of our reaped children: the generator processes, once waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(text: str) -> str:
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


WRK_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"status":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"timeout":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


def run_wrk(url: str, *, method: str, body: bytes, headers: dict[str, str], connections: int,
            threads: int, seconds: float, prefix: list[str]) -> LoadResult:
    """wrk for `seconds` with a Lua script that sets the method, body and headers."""
    lines = [f"wrk.method = {_lua_string(method)}", f"wrk.body = {_lua_string(body.decode())}"]
    if body:
        headers = {"Content-Type": "application/json", **headers}
    lines += [f"wrk.headers[ {_lua_string(k)} ] = {_lua_string(v)}" for k, v in headers.items()]
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "request.lua"
        script.write_text("\n".join(lines) + "\n" + WRK_DONE, encoding="utf-8")
        command = [*prefix, "wrk", "-t", str(max(1, threads)), "-c", str(max(connections, threads)),
                   "-d", f"{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script), url]
        cpu_before = children_cpu_seconds()
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60,
                              check=False)
        cpu = children_cpu_seconds() - cpu_before
    found = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({done.returncode}): {(done.stderr or done.stdout)[-300:]}")
    data = json.loads(found[-1].removeprefix(RESULT_PREFIX))
    socket_errors = sum(data[k] for k in ("connect", "read", "write", "timeout"))
    return LoadResult(
        tool="wrk",
        ok=max(0, data["requests"] - data["status"]),
        errors=data["status"] + socket_errors,
        seconds=data["duration_us"] / 1e6,
        latency_ms={k: round(data[f"{k}_us"] / 1000, 3) for k in ("p50", "p95", "p99", "max")},
        generator_cpu_seconds=cpu,
        detail={"connections": connections, "threads": threads, "non_2xx": data["status"],
                "socket_errors": socket_errors},
    )


def run_python(url: str, *, method: str, body: bytes, headers: dict[str, str], connections: int,
               processes: int, seconds: float, prefix: list[str], rate: float | None = None,
               ) -> LoadResult:
    """Our generator in `processes` processes, `connections` spread over them."""
    processes = max(1, min(processes, connections))
    with tempfile.TemporaryDirectory(prefix="bench-gen-") as tmp:
        body_file = Path(tmp) / "body"
        body_file.write_bytes(body)
        cpu_before = children_cpu_seconds()
        procs = []
        for n in range(processes):
            share = connections // processes + (1 if n < connections % processes else 0)
            command = [*prefix, sys.executable, "-m", "benchmarks.loadgen", "http", "--url", url,
                       "--method", method, "--body-file", str(body_file),
                       "--connections", str(share), "--seconds", str(seconds)]
            if rate is not None:
                command += ["--rate", str(rate / processes)]
            for name, value in headers.items():
                command += ["--header", f"{name}: {value}"]
            procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
        results = [_result_of(p, seconds + 60) for p in procs]
        cpu = children_cpu_seconds() - cpu_before
    samples = [s for r in results for s in r["samples_ms"]]
    return LoadResult(
        tool="python",
        ok=sum(r["ok"] for r in results),
        errors=sum(r["errors"] for r in results),
        seconds=max(r["seconds"] for r in results),
        latency_ms=percentiles(samples),
        generator_cpu_seconds=cpu,
        detail={"connections": connections, "processes": processes,
                "statuses": _merge_counts(r["statuses"] for r in results),
                "late_sends": sum(r["late"] for r in results)},
    )


def _merge_counts(items: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in items:
        for key, n in counts.items():
            total[key] = total.get(key, 0) + n
    return total


def _result_of(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    found = [ln for ln in out.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"load generator failed ({proc.returncode}): {err.strip()[-300:]}")
    result: dict[str, Any] = json.loads(found[-1].removeprefix(RESULT_PREFIX))
    return result


# The generator process ---------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; requests go one at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT_SECONDS
            )
            self._reader, self._writer = reader, writer
            return reader, writer
        return self._reader, self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._exchange(raw), REQUEST_TIMEOUT_SECONDS)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            self.close()  # the next request reconnects
            raise

    async def _exchange(self, raw: bytes) -> tuple[int, bytes]:
        reader, writer = await self._open()
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        chunked = close = False
        for header in head.split(b"\r\n")[1:]:
            name, _, value = header.partition(b":")
            key = name.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif key == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in parts)
        else:
            body = await reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body


def build_request(method: str, host: str, path: str, body: bytes, headers: list[str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *headers]
    if body or method in ("POST", "PUT"):
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _http_load(args: argparse.Namespace) -> dict[str, Any]:
    parts = urlsplit(args.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = Path(args.body_file).read_bytes() if args.body_file else b""
    raw = build_request(args.method, f"{host}:{port}", path, body, args.header)
    ok = errors = late = 0
    statuses: dict[str, int] = {}
    samples: list[float] = []
    started = time.perf_counter()
    deadline = started + args.seconds
    interval = args.connections / args.rate if args.rate else 0.0

    async def loop(n: int) -> None:
        nonlocal ok, errors, late
        conn = Connection(host, port)
        next_send = started + (interval * n / args.connections if interval else 0.0)
        try:
            while True:
                now = time.perf_counter()
                if interval:
                    if next_send >= deadline:
                        return
                    if next_send > now:
                        await asyncio.sleep(next_send - now)
                    elif now - next_send > interval:
                        late += 1
                    next_send += interval
                t0 = time.perf_counter()
                if t0 >= deadline:
                    return
                try:
                    status, _ = await conn.request(raw)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                    errors += 1
                    statuses["socket"] = statuses.get("socket", 0) + 1
                    await asyncio.sleep(0.01)
                    continue
                samples.append((time.perf_counter() - t0) * 1000)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if 200 <= status < 300:
                    ok += 1
                else:
                    errors += 1
        finally:
            conn.close()

    await asyncio.gather(*(loop(n) for n in range(args.connections)))
    elapsed = time.perf_counter() - started
    step = max(1, len(samples) // MAX_SAMPLES)
    return {"ok": ok, "errors": errors, "late": late, "seconds": elapsed, "statuses": statuses,
            "samples_ms": [round(s, 3) for s in samples[::step]]}


async def _worker(args: argparse.Namespace) -> dict[str, Any]:
    """An external worker: lease up to max_jobs, then settle them: one POST complete per job over
    `connections` connections (`--ack each`), or one batched POST ack per lease (`--ack batch`),
    the next lease overlapping the previous ack."""
    parts = urlsplit(args.base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    hostport = f"{host}:{port}"
    auth = [f"Authorization: Bearer {args.token}"]
    lease_body = orjson.dumps({"max_jobs": args.max_jobs, "wait_seconds": args.wait_seconds})
    lease_raw = build_request("POST", hostport, f"/api/v1/workers/{args.worker_id}/lease",
                              lease_body, auth)
    complete_body = orjson.dumps({"worker_id": args.worker_id})
    ack_path = f"/api/v1/workers/{args.worker_id}/ack"
    lease_conn = Connection(host, port)
    conns = [Connection(host, port) for _ in range(args.connections)]
    deadline = time.perf_counter() + args.seconds
    leased = completed = errors = empty = 0
    first_lease = last_complete = None
    cpu_before = time.process_time()

    async def ack_all(ids: list[str], conn: Connection) -> None:
        nonlocal completed, errors, last_complete
        body = orjson.dumps({"results": [{"job_id": job_id, "status": "succeeded"}
                                         for job_id in ids]})
        try:
            status, answer = await conn.request(build_request("POST", hostport, ack_path, body,
                                                              auth))
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            errors += len(ids)
            return
        if status != 200:
            errors += len(ids)
            return
        data = orjson.loads(answer)["data"]
        completed += len(data["accepted"])
        errors += len(data["rejected"])
        last_complete = time.time()

    async def complete_all(ids: list[str], conn: Connection) -> None:
        nonlocal completed, errors, last_complete
        for job_id in ids:
            raw = build_request("POST", hostport, f"/api/v1/jobs/{job_id}/complete",
                                complete_body, auth)
            try:
                status, _ = await conn.request(raw)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
                errors += 1
                continue
            if status == 200:
                completed += 1
                last_complete = time.time()
            else:
                errors += 1

    acking: asyncio.Future[None] | None = None
    try:
        while time.perf_counter() < deadline and empty < args.empty_leases:
            if first_lease is None:
                first_lease = time.time()
            status, body = await lease_conn.request(lease_raw)
            if status != 200:
                errors += 1
                await asyncio.sleep(0.05)
                continue
            ids = [j["id"] for j in orjson.loads(body)["data"]["jobs"]]
            if not ids:
                empty += 1
                continue
            empty = 0
            leased += len(ids)
            if args.ack == "batch":
                # The next lease goes out while this one's ack is in flight, as a worker that
                # settles in batches does; one ack at a time, on its own connection.
                if acking is not None:
                    await acking
                acking = asyncio.ensure_future(ack_all(ids, conns[0]))
                continue
            share = [ids[n :: len(conns)] for n in range(len(conns))]
            await asyncio.gather(*(complete_all(s, c) for s, c in zip(share, conns, strict=True)))
        if acking is not None:
            await acking
    finally:
        lease_conn.close()
        for conn in conns:
            conn.close()
    return {"leased": leased, "completed": completed, "errors": errors,
            "first_lease": first_lease, "last_complete": last_complete,
            "cpu_seconds": time.process_time() - cpu_before}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    sub = parser.add_subparsers(dest="mode", required=True)
    http = sub.add_parser("http", help="one request, repeated on keep-alive connections")
    http.add_argument("--url", required=True)
    http.add_argument("--method", default="GET")
    http.add_argument("--body-file")
    http.add_argument("--header", action="append", default=[])
    http.add_argument("--connections", type=int, default=8)
    http.add_argument("--seconds", type=float, default=5.0)
    http.add_argument("--rate", type=float, help="requests per second (open loop), else closed")
    worker = sub.add_parser("worker", help="an external worker over the worker protocol")
    worker.add_argument("--base-url", required=True)
    worker.add_argument("--token", required=True)
    worker.add_argument("--worker-id", required=True, type=uuid.UUID)
    worker.add_argument("--max-jobs", type=int, default=100)
    worker.add_argument("--wait-seconds", type=float, default=0.5)
    worker.add_argument("--connections", type=int, default=8)
    worker.add_argument("--ack", choices=("each", "batch"), default="each",
                        help="settle per job (POST complete) or per lease (POST ack)")
    worker.add_argument("--seconds", type=float, default=60.0)
    worker.add_argument("--empty-leases", type=int, default=2,
                        help="stop after this many empty leases in a row")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "worker_id", None) is not None:
        args.worker_id = str(args.worker_id)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    try:
        result = asyncio.run(_http_load(args) if args.mode == "http" else _worker(args))
    except (OSError, ValueError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitStatus.UNAVAILABLE
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return ExitStatus.OK


if __name__ == "__main__":
    sys.exit(main())
