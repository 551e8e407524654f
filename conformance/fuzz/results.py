"""Schemathesis' NDJSON event stream folded into fuzz-results.json: one record per check family.

The file is what the readiness report joins (catalogue item `API-FUZZ-<CHECK>` per check); each
failure carries a curl reproducer with credentials masked.
"""

from __future__ import annotations

import base64
import binascii
import json
import shlex
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.reporting.redact import redact_text

#: Version of the fuzz-results.json layout; bump on incompatible changes.
RESULTS_SCHEMA_VERSION = 1
#: Failures kept per (check, operation, failure code): enough to act on, small enough to read.
EXAMPLES_PER_GROUP = 3
#: Headers the HTTP client adds on its own; a reproducer is clearer without them.
NOISE_HEADERS = frozenset(
    {"user-agent", "accept-encoding", "accept", "connection", "content-length"}
)
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "cookie"})
MAX_BODY_CHARS = 4000


def item_id(check: str) -> str:
    """The catalogue id a check family reports under, e.g. `API-FUZZ-NOT-A-SERVER-ERROR`."""
    return "API-FUZZ-" + check.upper().replace("_", "-")


def _body_text(body: Any) -> str | None:
    if body is None:
        return None
    if isinstance(body, dict) and "$base64" in body:
        try:
            raw = base64.b64decode(body["$base64"])
        except (binascii.Error, ValueError):
            return None
        return raw.decode("utf-8", errors="backslashreplace")
    if isinstance(body, dict) and "string" in body:
        return str(body["string"])
    return str(body)


def curl_command(request: dict[str, Any]) -> str:
    """A shell-ready curl reproducing one recorded request, credentials masked."""
    parts = ["curl", "-X", str(request.get("method", "GET")), shlex.quote(str(request.get("uri")))]
    headers = request.get("headers") or {}
    for name, values in headers.items():
        if name.lower() in NOISE_HEADERS or name.lower().startswith("x-schemathesis"):
            continue
        for value in values if isinstance(values, list) else [values]:
            shown = "***" if name.lower() in SECRET_HEADERS else str(value)
            parts += ["-H", shlex.quote(f"{name}: {shown}")]
    body = _body_text(request.get("body"))
    if body:
        if len(body) > MAX_BODY_CHARS:
            body = body[:MAX_BODY_CHARS] + "...(truncated)"
        parts += ["--data-raw", shlex.quote(body)]
    return redact_text(" ".join(parts))


@dataclass(kw_only=True)
class CheckTally:
    passed: int = 0
    failed: int = 0
    failures: dict[tuple[str, str, str], list[dict[str, Any]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    group_counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)


@dataclass(kw_only=True)
class Tally:
    """Everything counted while reading the event stream."""

    requests: Counter[str] = field(default_factory=Counter)
    by_phase: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    checks: dict[str, CheckTally] = field(default_factory=lambda: defaultdict(CheckTally))
    errors: list[dict[str, str]] = field(default_factory=list)
    seed: int | None = None
    schemathesis_version: str | None = None
    finished: bool = False


def _scenario(tally: Tally, event: dict[str, Any]) -> None:
    phase = str(event.get("phase", ""))
    recorder = event.get("recorder") or {}
    cases = recorder.get("cases") or {}
    interactions = recorder.get("interactions") or {}
    labels: dict[str, str] = {}
    for case_id, node in cases.items():
        value = node.get("value") or {}
        label = f"{value.get('method', '?')} {value.get('path', '?')}"
        labels[case_id] = label
        if case_id in interactions:
            tally.requests[label] += 1
            tally.by_phase[phase][label] += 1
    for case_id, results in (recorder.get("checks") or {}).items():
        for result in results:
            name = str(result.get("name"))
            check = tally.checks[name]
            if result.get("status") != "failure":
                check.passed += 1
                continue
            check.failed += 1
            failure = (result.get("failure_info") or {}).get("failure") or {}
            operation = str(failure.get("operation") or labels.get(case_id, "?"))
            key = (operation, str(failure.get("code", "")), str(failure.get("title", "")))
            check.group_counts[key] += 1
            if len(check.failures[key]) >= EXAMPLES_PER_GROUP:
                continue
            exchange = interactions.get(case_id) or {}
            response = exchange.get("response") or {}
            check.failures[key].append(
                {
                    "phase": phase,
                    "message": redact_text(str(failure.get("message", ""))),
                    "status_code": response.get("status_code"),
                    "curl": curl_command(exchange["request"]) if "request" in exchange else None,
                }
            )


def read_events(ndjson: Path) -> Tally:
    """Fold the NDJSON events of one schemathesis run."""
    tally = Tally()
    with ndjson.open(encoding="utf-8") as stream:
        for line in stream:
            if not line.strip():
                continue
            event = json.loads(line)
            ((kind, body),) = event.items()
            if kind == "Initialize":
                tally.seed = body.get("seed")
                tally.schemathesis_version = body.get("schemathesis_version")
            elif kind == "ScenarioFinished":
                _scenario(tally, body)
            elif kind in ("NonFatalError", "FatalError"):
                info = body.get("info") or {}
                tally.errors.append(
                    {
                        "kind": kind,
                        "label": str(body.get("label", "")),
                        "title": str(info.get("title", "")),
                        "message": redact_text(str(info.get("message", "")))[:MAX_BODY_CHARS],
                    }
                )
            elif kind == "EngineFinished":
                tally.finished = True
    return tally


def check_records(tally: Tally, checks: tuple[str, ...]) -> list[dict[str, Any]]:
    """One record per requested check family, worst groups first."""
    records = []
    for name in checks:
        check = tally.checks.get(name, CheckTally())
        if check.failed:
            status = "failed"
        elif check.passed:
            status = "passed"
        else:
            status = "skipped"  # the check never applied (e.g. no DELETE sequence was generated)
        groups = [
            {
                "operation": operation,
                "code": code,
                "title": title,
                "count": check.group_counts[(operation, code, title)],
                "examples": check.failures[(operation, code, title)],
            }
            for (operation, code, title) in sorted(
                check.failures, key=lambda key: -check.group_counts[key]
            )
        ]
        records.append(
            {
                "check": name,
                "item_id": item_id(name),
                "status": status,
                "checked": check.passed + check.failed,
                "failed": check.failed,
                "failures": groups,
            }
        )
    return records


def summarise(tally: Tally, *, checks: tuple[str, ...], operations: list[str]) -> dict[str, Any]:
    """The counted part of fuzz-results.json (the caller adds run metadata)."""
    documented = set(operations)
    if not documented:  # a schema given by URL: count whatever was exercised
        documented = set(tally.requests)
        operations = sorted(documented)
    requests = {label: tally.requests.get(label, 0) for label in operations}
    # The coverage phase also probes undocumented methods (TRACE /jobs ...): counted apart.
    undocumented = sum(n for label, n in tally.requests.items() if label not in documented)
    records = check_records(tally, checks)
    return {
        "requests_per_operation": requests,
        "requests_undocumented_methods": undocumented,
        "requests_per_phase": {
            phase: sum(counter.values()) for phase, counter in sorted(tally.by_phase.items())
        },
        "totals": {
            "requests": sum(tally.requests.values()),
            "operations": len(operations),
            "operations_exercised": sum(1 for label in operations if requests[label] > 0),
            "failures": sum(r["failed"] for r in records),
            "errors": len(tally.errors),
        },
        "checks": records,
        "errors": tally.errors,
    }
