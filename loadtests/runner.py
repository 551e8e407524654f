"""`python -m loadtests`: run a load profile or a sizing sweep and write the load report.

Against the reference stack the runner stands the stack up with the profile's server settings;
against anyone else's deployment it runs only with --allow-load, with users and duration capped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

import httpx

from conformance.stack import REFERENCE_KINDS
from loadtests import plots, sizing
from loadtests.generator import GeneratorReport, run_locust
from loadtests.profiles import Profile, ProfileError, Sweep, load_profile, load_sweep
from loadtests.thresholds import Outcome, evaluate, read_stats


class ExitStatus(IntEnum):
    """Exit statuses of `python -m loadtests`."""

    PASSED = 0
    BREACHED = 1  # a threshold was breached (printed by name), or the generator failed
    USAGE = 2
    UNREACHABLE = 3  # the target did not answer, or refused the set-up


#: Caps against a deployment that is not the reference stack, unless raised explicitly.
FOREIGN_MAX_USERS = 20
FOREIGN_MAX_SECONDS = 60.0
#: The reference stack's own rate limit would throttle the load it is measured with.
LOAD_SERVER_ENV = {"RATE_LIMIT_PER_MINUTE": "10000000", "LOG_LEVEL": "warning"}
EXTERNAL_QUEUE = "load"


class UsageError(Exception):
    pass


class Unreachable(Exception):
    pass


class GeneratorFailed(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__)
    parser.add_argument("--profile", default="smoke", help="profile name in the profiles file")
    parser.add_argument("--profiles-file", type=Path, default=None)
    parser.add_argument("--sweep", action="store_true", help="also sweep WORKERS x POOL_SIZE")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="Locust worker processes (default: one per core)")
    parser.add_argument("--remote-workers", type=int, default=0,
                        help="Locust workers that will join from other machines")
    parser.add_argument("--master-bind", default=None, metavar="HOST:PORT",
                        help="where the Locust master listens for remote workers")
    parser.add_argument("--stack", default="auto", choices=REFERENCE_KINDS)
    parser.add_argument("--target-url", default=None, help="a deployment other than the reference")
    parser.add_argument("--api-key", default=None, help="API key for --target-url")
    parser.add_argument("--ca-bundle", type=Path, default=None)
    parser.add_argument("--allow-load", action="store_true",
                        help="required to load a deployment other than the reference stack")
    parser.add_argument("--max-users", type=int, default=FOREIGN_MAX_USERS)
    parser.add_argument("--max-seconds", type=float, default=FOREIGN_MAX_SECONDS)
    parser.add_argument("--database-url", default=None,
                        help="read PostgreSQL max_connections for the static sizing check")
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"))
    return parser


@contextlib.contextmanager
def reference_target(stack: str, server: dict[str, int]) -> Iterator[Any]:
    from conformance.stack import open_stack  # the stack providers stand the reference up

    env = {**LOAD_SERVER_ENV, **{k: str(v) for k, v in server.items()}}
    with open_stack(stack, server_env=env) as target:
        yield target


def _client(base_url: str, ca_bundle: Path | None) -> httpx.Client:
    # httpx takes an SSL context (a CA path is deprecated there).
    verify = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    return httpx.Client(base_url=base_url, verify=verify, timeout=10.0)


def provision_reference(target: Any) -> str:
    """Log in as the stack's admin, create the external workers' queue and an API key."""
    with _client(target.base_url, target.ca_bundle) as http:
        login = http.post("/api/v1/auth/login",
                          json={"email": target.admin_email, "password": target.admin_password})
        login.raise_for_status()
        token = login.json()["data"]["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        queue = http.post("/api/v1/queues", json={"name": EXTERNAL_QUEUE}, headers=auth)
        if queue.status_code not in (201, 409):
            queue.raise_for_status()
        key = http.post(
            "/api/v1/api-keys",
            json={"name": "loadtest", "permissions": [
                "queue:read", "queue:write", "job:read", "job:write", "worker:read",
                "worker:write"]},
            headers=auth,
        )
        key.raise_for_status()
        return str(key.json()["data"]["key"])


def probe(base_url: str, ca_bundle: Path | None) -> None:
    try:
        with _client(base_url, ca_bundle) as http:
            http.get("/health", timeout=5.0)
    except httpx.HTTPError as exc:
        raise Unreachable(f"{base_url} did not answer: {exc.__class__.__name__}") from None


def _stages(profile: Profile) -> list[dict[str, float]]:
    return [{"until": s.until, "users": s.users, "spawn_rate": s.spawn_rate}
            for s in profile.stages]


def run_profile(
    profile: Profile, *, base_url: str, api_key: str, ca_bundle: Path | None, processes: int,
    out_dir: Path, remote_workers: int = 0, master_bind: tuple[str, int] | None = None,
) -> tuple[list[Outcome], GeneratorReport, list[Path]]:
    generator = run_locust(
        host=base_url, out_dir=out_dir, stages=_stages(profile), mix=profile.mix,
        api_key=api_key, ca_bundle=ca_bundle, processes=processes, duration=profile.duration,
        remote_workers=remote_workers, master_bind=master_bind,
    )
    if not (out_dir / "locust_stats.csv").exists():
        raise GeneratorFailed(f"Locust wrote no statistics; see {out_dir / 'locust.log'}")
    stats = read_stats(out_dir / "locust")
    outcomes = evaluate(profile.thresholds, stats)
    return outcomes, generator, plots.plot_run(out_dir / "locust", out_dir)


def run_sweep(
    sweep: Sweep, *, stack: str, processes: int, out_dir: Path
) -> list[sizing.SweepPoint]:
    points: list[sizing.SweepPoint] = []
    stages = [{"until": min(5.0, sweep.seconds / 4), "users": sweep.users,
               "spawn_rate": sweep.spawn_rate},
              {"until": sweep.seconds, "users": sweep.users, "spawn_rate": sweep.spawn_rate}]
    for workers in sweep.workers:
        for pool_size in sweep.pool_sizes:
            cell = out_dir / f"w{workers}-p{pool_size}"
            with reference_target(stack, {"WORKERS": workers, "POOL_SIZE": pool_size}) as target:
                api_key = provision_reference(target)
                run_locust(host=target.base_url, out_dir=cell, stages=stages, mix=sweep.mix,
                           api_key=api_key, ca_bundle=target.ca_bundle, processes=processes,
                           duration=sweep.seconds)
            stats = read_stats(cell / "locust")
            point = sizing.SweepPoint(
                workers=workers, pool_size=pool_size, throughput=stats.total.rps,
                p95_ms=stats.total.percentiles_ms["p95"], error_rate=stats.error_rate,
            )
            print(f"sweep WORKERS={workers} POOL_SIZE={pool_size}: {point.throughput:.0f} req/s, "
                  f"p95 {point.p95_ms:.0f} ms, errors {point.error_rate:.2%}", flush=True)
            points.append(point)
    return points


def _pg_max_connections(database_url: str | None) -> int | None:
    if not database_url:
        return None
    import psycopg

    with psycopg.connect(database_url, connect_timeout=5) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
    return int(row[0]) if row else None


def _write_report(out_dir: Path, summary: dict[str, Any]) -> None:
    (out_dir / "verdict.json").write_text(json.dumps(summary, indent=2, default=str))
    lines = [f"# Load test: profile `{summary['profile']}`", "",
             f"**Verdict: {summary['verdict']}** against {summary['target']}", "",
             "| threshold | actual | |", "|---|---|---|"]
    for o in summary["thresholds"]:
        mark = "ok" if o["passed"] else "BREACHED"
        lines.append(f"| {o['threshold']} | {o['actual']} | {mark} |")
    gen = summary["generator"]
    lines += ["", f"Generator: {gen['processes']} Locust process(es), CPU mean "
                  f"{gen['cpu_mean_percent']}% / max {gen['cpu_max_percent']}% per process"
                  + (" (SATURATED: the generator, not the target, may be the limit)"
                     if gen["saturated"] else ""), ""]
    for plot in summary.get("plots", []):
        lines.append(f"![{Path(plot).stem}]({Path(plot).name})")
    if "sizing" in summary:
        rec = summary["sizing"]["recommendation"]
        lines += ["", "## Sizing", "", "| WORKERS | POOL_SIZE | req/s | p95 ms | errors |",
                  "|---|---|---|---|---|"]
        for p in summary["sizing"]["points"]:
            lines.append(f"| {p['workers']} | {p['pool_size']} | {p['throughput']:.0f} | "
                         f"{p['p95_ms']:.0f} | {p['error_rate']:.2%} |")
        lines += ["", f"Knee on this machine ({rec['machine_cores']} cores): "
                      f"WORKERS={rec['knee']['WORKERS']}, POOL_SIZE={rec['knee']['POOL_SIZE']}.",
                  f"Scaling rule: {rec['rule']}.", ""]
        for name, t in rec["guide_targets"].items():
            lines.append(f"- guide {name} ({t['cores']} cores): WORKERS={t['WORKERS']}, "
                         f"POOL_SIZE={t['POOL_SIZE']}, PostgreSQL max_connections >= "
                         f"{t['postgres_max_connections_needed']}")
    (out_dir / "load-report.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        profile = load_profile(args.profile, args.profiles_file)
        sweep = load_sweep(args.profiles_file) if args.sweep else None
        if args.target_url and not args.allow_load:
            raise UsageError(f"{args.target_url} is not the reference stack: load needs "
                             "--allow-load (and is capped by --max-users/--max-seconds)")
        if args.target_url and not args.api_key:
            raise UsageError("--target-url needs --api-key")
        master_bind = None
        if args.master_bind:
            host, _, port = args.master_bind.rpartition(":")
            if not host or not port.isdigit():
                raise UsageError("--master-bind takes HOST:PORT")
            master_bind = (host, int(port))
        if args.sweep and args.target_url:
            raise UsageError("--sweep restarts the server with each setting: reference stack only")
    except (ProfileError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitStatus.USAGE

    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-load"
    out_dir = args.reports_dir / run_id / "load"
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    summary: dict[str, Any] = {"profile": profile.name, "run_id": run_id,
                               "server_settings": profile.server}
    try:
        if args.target_url:
            profile = profile.capped(max_users=args.max_users, max_seconds=args.max_seconds)
            probe(args.target_url, args.ca_bundle)
            summary["target"] = args.target_url
            outcomes, generator, pngs = run_profile(
                profile, base_url=args.target_url, api_key=args.api_key,
                ca_bundle=args.ca_bundle, processes=args.processes, out_dir=out_dir,
                remote_workers=args.remote_workers, master_bind=master_bind)
            pg_max = _pg_max_connections(args.database_url)
        else:
            with reference_target(args.stack, profile.server) as target:
                summary["target"] = f"reference stack ({target.provider}) {target.base_url}"
                print(f"load: profile {profile.name} against {summary['target']}", flush=True)
                api_key = provision_reference(target)
                outcomes, generator, pngs = run_profile(
                    profile, base_url=target.base_url, api_key=api_key,
                    ca_bundle=target.ca_bundle, processes=args.processes, out_dir=out_dir,
                    remote_workers=args.remote_workers, master_bind=master_bind)
                pg_max = _pg_max_connections(args.database_url or target.database_url)
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitStatus.UNREACHABLE
    except httpx.HTTPError as exc:
        print(f"error: the target refused the load test's set-up: {exc}", file=sys.stderr)
        return ExitStatus.UNREACHABLE
    except GeneratorFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitStatus.BREACHED

    server = profile.server
    static = sizing.static_checks(
        workers=server.get("WORKERS", 1), pool_size=server.get("POOL_SIZE", 20),
        max_connections=server.get("MAX_CONNECTIONS", 100), pg_max_connections=pg_max)
    summary.update({
        "thresholds": [asdict(o) for o in outcomes],
        "generator": asdict(generator),
        "static_sizing": [asdict(c) for c in static],
        "plots": [str(p) for p in pngs],
    })
    if sweep is not None:
        points = run_sweep(sweep, stack=args.stack, processes=args.processes,
                           out_dir=out_dir / "sweep")
        heatmap = plots.plot_sizing(points, out_dir)
        summary["plots"].append(str(heatmap))
        summary["sizing"] = {"points": [asdict(p) for p in points],
                             "recommendation": sizing.recommend(points)}
        (out_dir / "sizing.json").write_text(json.dumps(summary["sizing"], indent=2))
    breached = [o for o in outcomes if not o.passed] + [c for c in static if not c.passed]
    summary["verdict"] = "FAILED" if breached else "PASSED"
    summary["seconds"] = round(time.monotonic() - started, 1)
    _write_report(out_dir, summary)
    for o in outcomes:
        print(f"{'ok      ' if o.passed else 'BREACHED'} {o.threshold} (actual {o.actual})")
    for c in static:
        print(f"{'ok      ' if c.passed else 'BREACHED'} sizing {c.name}: {c.detail}")
    if generator.saturated:
        print(f"warning: the load generator saturated (max {generator.cpu_max_percent}% CPU "
              "per process); add --processes or Locust workers on other machines")
    print(f"load report: {out_dir / 'load-report.md'}")
    return ExitStatus.BREACHED if breached else ExitStatus.PASSED
