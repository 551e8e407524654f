"""fuzz-results.json as conformance findings: one catalogue item per check family.

For the readiness report: `catalogue_entries()` describes the API-FUZZ-* items and
`load_findings(path)` turns a fuzz run's results into one Finding per item, each failure carrying
its curl reproducer as HTTP evidence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conformance.fuzz.results import item_id
from conformance.fuzz.runner import CHECKS
from conformance.model import CatalogueEntry, Evidence, Finding, Kind, Phase, Severity, Status

#: (title, severity, rationale) per check family.
_ITEMS: dict[str, tuple[str, Severity, str]] = {
    "not_a_server_error": (
        "No request makes the API answer 5xx",
        Severity.MAJOR,
        "A 500 on an odd request is a bug users will hit, and often a crash path.",
    ),
    "status_code_conformance": (
        "Every status code the API answers is documented",
        Severity.MINOR,
        "Clients handle the statuses the contract lists; others surprise them.",
    ),
    "content_type_conformance": (
        "Responses carry the documented content type",
        Severity.MINOR,
        "Clients parse by content type.",
    ),
    "response_schema_conformance": (
        "Response bodies match the contract's schemas",
        Severity.MAJOR,
        "A body that breaks its schema breaks every client generated from the contract.",
    ),
    "response_headers_conformance": (
        "Documented response headers are present and well-formed",
        Severity.MINOR,
        "X-Request-ID, rate-limit and Retry-After headers are part of the contract.",
    ),
    "negative_data_rejection": (
        "Requests violating the contract are rejected with 4xx",
        Severity.MINOR,
        "Accepting invalid input stores data the rest of the system does not expect.",
    ),
    "positive_data_acceptance": (
        "Requests valid under the contract are accepted",
        Severity.MINOR,
        "Refusing valid input breaks conforming clients.",
    ),
    "ignored_auth": (
        "Operations that require authentication enforce it",
        Severity.BLOCKER,
        "An operation that answers without valid credentials is open to anyone.",
    ),
    "use_after_free": (
        "Deleted resources stay deleted",
        Severity.MAJOR,
        "A resource usable after DELETE means revocation and deletion do not hold.",
    ),
}


def catalogue_entries() -> list[CatalogueEntry]:
    """The API-FUZZ-* items, one per schemathesis check family the fuzzer runs."""
    entries = []
    for check in CHECKS:
        title, severity, rationale = _ITEMS[check]
        entries.append(
            CatalogueEntry(
                id=item_id(check),
                section="API contract",
                guide_text=f"schemathesis check `{check}` against reference_server/openapi.json",
                title=title,
                phase=Phase.POST_DEPLOY,
                severity=severity,
                kind=Kind.AUTOMATED,
                rationale=rationale,
                remediation=(
                    "Replay each curl reproducer against the deployment, fix the handler (or the "
                    "contract, where the contract is wrong), and re-run `nox -s fuzz`."
                ),
            )
        )
    return entries


def _evidence(group: dict[str, Any]) -> list[Evidence]:
    return [
        Evidence(
            kind="http",
            summary=f"{group['operation']}: {group['title']} ({group['code']}), "
            f"{group['count']} case(s); {example.get('message', '')[:300]}",
            curl=example.get("curl"),
            status_code=example.get("status_code"),
        )
        for example in group.get("examples", [])
    ]


def load_findings(results_file: Path) -> list[Finding]:
    """One finding per check family recorded in a fuzz-results.json."""
    results = json.loads(results_file.read_text(encoding="utf-8"))
    statuses = {"passed": Status.PASSED, "failed": Status.FAILED, "skipped": Status.SKIPPED}
    findings = []
    for record in results.get("checks", []):
        evidence: list[Evidence] = []
        for group in record.get("failures", []):
            evidence.extend(_evidence(group))
        findings.append(
            Finding(
                item_id=record["item_id"],
                status=statuses.get(record["status"], Status.ERROR),
                check=f"fuzz:{record['check']}",
                message=(
                    f"{record['checked']} responses checked, {record['failed']} failed "
                    f"(seed {results.get('seed')}, "
                    f"{results.get('max_examples_per_operation')} examples per operation)"
                ),
                expected="no failure",
                actual=f"{record['failed']} failure(s)" if record["failed"] else "none",
                evidence=tuple(evidence),
            )
        )
    return findings
