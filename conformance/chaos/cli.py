"""`python -m conformance.chaos [--quick] [--scenario NAME]...`: fault injection, one line each.

Exit status: 0 every promise kept, 1 a promise broken (a job lost, a 500, a bound exceeded) or a
scenario that could not be staged, 2 bad usage, 3 the stack did not start.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from conformance.chaos.results import FILE_NAME, write_results
from conformance.chaos.runner import SCENARIOS, run_scenario
from conformance.chaos.scenarios import ScenarioResult, Sizes
from conformance.model import ExitStatus
from conformance.usage import UsageError, UsageParser


def _parser() -> UsageParser:
    parser = UsageParser(
        prog="python -m conformance.chaos",
        description="Fault injection against the reference stack; writes reports/<run>/chaos.json.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="small counts and short outages (what the test suite runs)")
    parser.add_argument("--scenario", action="append", default=[], choices=sorted(SCENARIOS),
                        help="run only this scenario (repeatable); default: all, in order")
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"),
                        help="chaos.json goes to <reports-dir>/<run-id>/ (default: reports)")
    parser.add_argument("--run-id", help="name of the run directory (default: time-based)")
    parser.add_argument("--workers", type=int, default=2,
                        help="server processes (WORKERS) of the stack (default: 2)")
    return parser


def new_run_id(now: datetime) -> str:
    """Same form as the conformance runner's: sortable, unique enough."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def summary_line(result: ScenarioResult) -> str:
    verdict = "ok    " if result.ok else "BROKEN"
    recovery = "-" if result.recovery_seconds is None else f"{result.recovery_seconds:.1f}s"
    if result.recovery_bound_seconds is not None:
        recovery += f" (bound {result.recovery_bound_seconds:.0f}s)"
    line = (f"{verdict} {result.name:<20} accepted={result.accepted} completed={result.completed} "
            f"lost={result.lost} re-executed={result.re_executed} 500s={result.http_500} "
            f"recovery={recovery} took={result.duration_seconds:.1f}s")
    if result.error:
        line += f"\n       could not run: {result.error}"
    for problem in result.problems:
        line += f"\n       {problem}"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if not 1 <= args.workers <= 16:
            raise UsageError("--workers must be within 1..16")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    from conformance.chaos.stack import ChaosError, chaos_stack
    from conformance.stack import signals_deferred, terminate_as_interrupt

    names = args.scenario or list(SCENARIOS)
    sizes = Sizes.quick() if args.quick else Sizes.full()
    started = datetime.now(UTC)
    run_id = args.run_id or new_run_id(started)
    out = args.reports_dir / run_id / FILE_NAME
    results: list[ScenarioResult] = []
    began = time.monotonic()
    try:
        with terminate_as_interrupt(), chaos_stack(workers=args.workers,
                                                   logs_to=out.parent / "chaos-logs") as stack:
            print(f"chaos: stack ready at {stack.base_url} in {time.monotonic() - began:.1f}s "
                  f"(WORKERS={args.workers}, {'quick' if args.quick else 'full'} sizes)",
                  flush=True)
            for name in names:
                result = run_scenario(stack, name, sizes)
                results.append(result)
                print(summary_line(result), flush=True)
    except ChaosError as exc:
        print(f"error: the chaos stack did not start: {exc}", file=sys.stderr)
        return ExitStatus.UNREACHABLE
    except KeyboardInterrupt:
        print("chaos: interrupted", file=sys.stderr)
        return ExitStatus.BLOCKED
    finally:
        with signals_deferred():
            if results:
                write_results(out, run_id=run_id, quick=args.quick,
                              started_at=started.isoformat(),
                              finished_at=datetime.now(UTC).isoformat(),
                              scenarios=[r.as_dict() for r in results])
    print(f"chaos: {sum(r.ok for r in results)}/{len(results)} scenarios kept their promises; "
          f"figures in {out}", flush=True)
    return ExitStatus.READY if all(r.ok for r in results) else ExitStatus.BLOCKED
