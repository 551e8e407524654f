"""Start-up cost of the reference stacks, measured (not asserted), written to reports/startup.json.

docker: from open_stack() until PostgreSQL, Redis and the server are healthy (local images);
docker-deployment: the same with the whole reference deployment (NGINX, Prometheus,
Alertmanager, the exporter, the backup service) until the app answers through NGINX and every
service is healthy; embedded: until the server answers /ready. Each is stood up a few times;
the median is reported next to the target (15 s, 30 s and 5 s) and the machine's load, since a
shared machine moves the figures.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conformance.model import ExitStatus
from conformance.stack import REFERENCE_PROVIDERS, StackError, open_stack
from conformance.stack.images import DEPLOYMENT_IMAGES, STACK_IMAGES
from conformance.usage import UsageError, UsageParser

TARGET_SECONDS = {"docker": 15.0, "docker-deployment": 30.0, "embedded": 5.0}
#: What each measured kind stands up: a provider and its options.
KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    **{provider: (provider, {}) for provider in REFERENCE_PROVIDERS},
    "docker-deployment": ("docker", {"deployment": True}),
}
DEFAULT_ROUNDS = 3


def measure(kind: str, rounds: int) -> dict[str, Any]:
    """Stand the stack up `rounds` times; seconds to ready and to torn down, per round."""
    runs: list[dict[str, float]] = []
    for _ in range(rounds):
        started = time.monotonic()
        provider, options = KINDS[kind]
        with open_stack(provider, create_admin=False, **options):
            ready = time.monotonic() - started
            closing = time.monotonic()
        runs.append({"ready_seconds": round(ready, 2),
                     "teardown_seconds": round(time.monotonic() - closing, 2)})
    ready_times = [run["ready_seconds"] for run in runs]
    median = statistics.median(ready_times)
    return {
        "runs": runs,
        "median_ready_seconds": round(median, 2),
        "max_ready_seconds": round(max(ready_times), 2),
        "target_seconds": TARGET_SECONDS[kind],
        "within_target": median <= TARGET_SECONDS[kind],
    }


def main(argv: list[str] | None = None) -> int:
    parser = UsageParser(prog="python -m conformance.stack.startup_bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help=f"stacks stood up per provider (default {DEFAULT_ROUNDS})")
    parser.add_argument("--stack", action="append", choices=tuple(KINDS),
                        help="stack to measure (repeatable; default: all)")
    parser.add_argument("--output", type=Path, default=Path("reports/startup.json"))
    parser.add_argument("--command", default=None,
                        help="the command to record as having produced the figures")
    try:
        args = parser.parse_args(argv)
        if not 1 <= args.rounds <= 20:
            raise UsageError("--rounds must be from 1 to 20")
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    kinds = args.stack or list(KINDS)
    command = args.command or "python -m conformance.stack.startup_bench " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    report: dict[str, Any] = {
        "schema": "taskforge-startup/1",
        "command": command,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
        },
        "images": {role.env_var: role.name for role in (*STACK_IMAGES, *DEPLOYMENT_IMAGES)},
        "results": {},
    }
    status = ExitStatus.READY
    for kind in kinds:
        try:
            result = measure(kind, args.rounds)
        except StackError as exc:
            result = {"error": str(exc)}
            status = ExitStatus.BLOCKED
        report["results"][kind] = result
        if "error" in result:
            print(f"{kind}: error: {result['error']}", file=sys.stderr)
        else:
            print(f"{kind}: median {result['median_ready_seconds']}s to ready "
                  f"(target {result['target_seconds']:.0f}s; runs "
                  f"{[r['ready_seconds'] for r in result['runs']]})")
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {args.output}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
