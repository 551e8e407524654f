"""fuzz-results.json as conformance findings: one catalogue item per check family.

For the readiness report (conformance/checks/fuzz.py): `catalogue_entries()` are the API-FUZZ-*
items of the catalogue and `load_findings(path)` turns a fuzz run's results into one Finding per
item, each failure carrying its curl reproducer as HTTP evidence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conformance.model import CatalogueEntry, Evidence, Finding, Status


def catalogue_entries() -> list[CatalogueEntry]:
    """The API-FUZZ-* items of the catalogue (conformance/catalogue/fuzz.yaml), one per check."""
    from conformance.catalogue import load_catalogue

    return [entry for entry in load_catalogue().values() if entry.id.startswith("API-FUZZ-")]


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
