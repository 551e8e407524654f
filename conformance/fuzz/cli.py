"""Command line of the fuzzer: `python -m conformance.fuzz [options]` (`nox -s fuzz -- [options]`).

Exit status: 0 no failure, 1 failures found (or the run could not finish), 2 bad options,
3 target unreachable.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from conformance.fuzz.credentials import SetupError
from conformance.fuzz.runner import (
    CHECKS,
    DEFAULT_EXTERNAL_RATE_LIMIT,
    DEFAULT_MAX_EXAMPLES,
    DEFAULT_SEED,
    PHASES,
    FuzzOptions,
    FuzzOutcome,
    UnreachableError,
    run_fuzz,
)
from conformance.model import ExitStatus
from conformance.stack import REFERENCE_KINDS
from conformance.usage import UsageError, UsageParser


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="python -m conformance.fuzz",
        description="Fuzz a TaskForge deployment against the contract's OpenAPI document.",
    )
    target = parser.add_argument_group("target")
    target.add_argument("--target-url", help="deployment to fuzz (default: the reference stack)")
    target.add_argument(
        "--stack",
        default="auto",
        choices=REFERENCE_KINDS,
        help="how to stand the reference stack up when no --target-url is given",
    )
    target.add_argument(
        "--token",
        default=os.environ.get("TASKFORGE_FUZZ_TOKEN"),
        help="access JWT for the target (or env TASKFORGE_FUZZ_TOKEN)",
    )
    target.add_argument(
        "--api-key",
        default=os.environ.get("TASKFORGE_API_KEY"),
        help="tf_ API key for the target (or env TASKFORGE_API_KEY)",
    )
    target.add_argument(
        "--allow-writes",
        action="store_true",
        help="allow fuzzing (which creates data) against a target other than the reference stack",
    )
    target.add_argument(
        "--rate-limit",
        help=f"request cap, e.g. 10/s (default for --target-url: {DEFAULT_EXTERNAL_RATE_LIMIT})",
    )
    target.add_argument("--ca-bundle", type=Path, help="PEM bundle to verify the target's TLS")
    target.add_argument("--insecure", action="store_true", help="do not verify TLS")
    fuzz = parser.add_argument_group("fuzzing")
    fuzz.add_argument(
        "--max-examples",
        type=int,
        default=DEFAULT_MAX_EXAMPLES,
        help=f"examples per operation and phase (default {DEFAULT_MAX_EXAMPLES})",
    )
    fuzz.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (fixed default)")
    fuzz.add_argument("--phases", type=_csv, default=PHASES, help=",".join(PHASES))
    fuzz.add_argument("--checks", type=_csv, default=CHECKS, help=",".join(CHECKS))
    fuzz.add_argument("--workers", type=int, default=1, help="concurrent schemathesis workers")
    fuzz.add_argument(
        "--schema", help="OpenAPI document (path or URL; default: the contract's openapi.json)"
    )
    fuzz.add_argument(
        "--timeout", type=float, default=3600.0, help="bound on the whole run, in seconds"
    )
    output = parser.add_argument_group("output")
    output.add_argument("--reports-dir", type=Path, default=Path("reports"))
    output.add_argument("--run-id", help="write into reports/<run-id>/fuzz/ (default: a new id)")
    return parser


def summary_lines(outcome: FuzzOutcome) -> list[str]:
    results = outcome.results
    lines = []
    per_op = results.get("requests_per_operation") or {}
    if per_op:
        counts = sorted(per_op.values())
        lines.append(
            f"requests per operation: min {counts[0]}, median {counts[len(counts) // 2]}, "
            f"max {counts[-1]} over {len(counts)} operations"
        )
    for record in results.get("checks", []):
        lines.append(
            f"{record['status'].upper():8} {record['check']} "
            f"({record['checked']} checked, {record['failed']} failed)"
        )
        for group in record["failures"]:
            lines.append(f"         {group['operation']}: {group['title']} x{group['count']}")
            example = group["examples"][0] if group["examples"] else None
            if example and example.get("curl"):
                lines.append(f"           $ {example['curl'][:300]}")
    for error in results.get("errors", []):
        lines.append(f"ERROR    {error.get('title', '')} {error.get('label', '')}".rstrip())
    if results.get("timed_out"):
        lines.append("ERROR    the run hit --timeout and was stopped")
    lines.append(f"results: {outcome.results_file}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(ExitStatus.USAGE)
    options = FuzzOptions(
        target_url=args.target_url,
        stack=args.stack,
        token=args.token,
        api_key=args.api_key,
        allow_writes=args.allow_writes,
        rate_limit=args.rate_limit,
        max_examples=args.max_examples,
        seed=args.seed,
        phases=tuple(args.phases),
        checks=tuple(args.checks),
        schema=args.schema,
        reports_dir=args.reports_dir,
        run_id=args.run_id,
        ca_bundle=args.ca_bundle,
        insecure=args.insecure,
        workers=args.workers,
        timeout_seconds=args.timeout,
    )
    try:
        outcome = run_fuzz(options)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(ExitStatus.USAGE)
    except UnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(ExitStatus.UNREACHABLE)
    except SetupError as exc:
        print(f"error: fuzzing setup failed: {exc}", file=sys.stderr)
        return int(ExitStatus.BLOCKED)
    for line in summary_lines(outcome):
        print(line)
    return int(outcome.exit_status)
