"""Attestations: a person's signed statement, with evidence, for an item no machine can check.

An attested catalogue item without an attestation is `unattested`; it blocks the verdict only when
the run requires attestations (a pre-deploy release gate).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from pathlib import Path

from conformance.model import Attestation
from conformance.yamlrecords import ConfigError, read_records

FIELDS = frozenset({"id", "by", "on", "evidence"})


def load_attestations(
    path: Path, known_ids: Collection[str] | None = None, today: date | None = None
) -> list[Attestation]:
    """Read an attestations file; ConfigError (with file and line) when it is malformed."""
    attestations: list[Attestation] = []
    seen: dict[str, int] = {}
    for record in read_records(path, "attestations", FIELDS):
        item_id = record.text("id")
        if known_ids is not None and item_id not in known_ids:
            raise record.error(f"unknown catalogue item '{item_id}'", "id")
        if item_id in seen:
            raise record.error(
                f"second attestation for '{item_id}' (first on line {seen[item_id]})", "id")
        seen[item_id] = record.line
        on = record.date("on")
        if today is not None and on > today:
            raise record.error(f"'on' is in the future: {on.isoformat()}", "on")
        attestations.append(Attestation(
            item_id=item_id, by=record.text("by"), on=on, evidence=record.text("evidence"),
        ))
    return attestations


def how_to_attest(item_id: str, what: str | None) -> str:
    """One YAML entry a user can paste into an attestations file."""
    lines = [
        f"  - id: {item_id}",
        "    by: <who confirms it>",
        "    on: <YYYY-MM-DD>",
        "    evidence: <link to the ticket, document or runbook>",
    ]
    if what:
        lines.insert(1, f"    # evidence expected: {what}")
    return "\n".join(lines)


__all__ = ["ConfigError", "how_to_attest", "load_attestations"]
