"""Attestations: a person's signed statement, with evidence, for an item no machine can check.

An attested catalogue item without an attestation is `unattested`; it blocks the verdict only when
the run requires attestations (a pre-deploy release gate).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, timedelta
from pathlib import Path

from conformance.model import Attestation, Phase
from conformance.yamlrecords import ConfigError, read_records

FIELDS = frozenset({"id", "by", "on", "evidence", "grace_days"})

#: How long an attestation of a recurring item (guide 8.1-8.3) holds before it must be renewed.
PERIOD_DAYS = {Phase.DAILY: 1, Phase.WEEKLY: 7, Phase.MONTHLY: 31}


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
        grace = record.fields.get("grace_days", "").strip()
        if grace and not grace.isdigit():
            raise record.error(f"'grace_days' is not a number of days: {grace!r}", "grace_days")
        attestations.append(Attestation(
            item_id=item_id, by=record.text("by"), on=on, evidence=record.text("evidence"),
            grace_days=int(grace) if grace else None,
        ))
    return attestations


def lapses_on(attestation: Attestation, phase: Phase) -> date | None:
    """The last day a recurring item's attestation holds (its period plus the grace it sets);
    None for items attested once."""
    period = PERIOD_DAYS.get(phase)
    if period is None:
        return None
    return attestation.on + timedelta(days=period + (attestation.grace_days or 0))


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


__all__ = ["ConfigError", "how_to_attest", "lapses_on", "load_attestations"]
