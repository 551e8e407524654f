"""Waivers: a release manager's signed-off exception for one catalogue item, until a date.

A waiver turns a failed, errored or unattested item into `waived`; once its expiry date has passed
it no longer applies, and the item keeps its real status.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import date
from pathlib import Path

from conformance.model import Waiver
from conformance.yamlrecords import ConfigError, read_records

FIELDS = frozenset({"id", "justification", "owner", "expires"})


def load_waivers(path: Path, known_ids: Collection[str] | None = None) -> list[Waiver]:
    """Read a waivers file; ConfigError (with file and line) when it is malformed."""
    waivers: list[Waiver] = []
    seen: dict[str, int] = {}
    for record in read_records(path, "waivers", FIELDS):
        item_id = record.text("id")
        if known_ids is not None and item_id not in known_ids:
            raise record.error(f"unknown catalogue item '{item_id}'", "id")
        if item_id in seen:
            raise record.error(f"second waiver for '{item_id}' (first on line {seen[item_id]})",
                               "id")
        seen[item_id] = record.line
        waivers.append(Waiver(
            item_id=item_id,
            justification=record.text("justification"),
            owner=record.text("owner"),
            expires=record.date("expires"),
        ))
    return waivers


def is_expired(waiver: Waiver, today: date) -> bool:
    """A waiver holds through its expiry date and stops the day after."""
    return today > waiver.expires


def split_waivers(
    waivers: Iterable[Waiver], today: date
) -> tuple[dict[str, Waiver], dict[str, Waiver]]:
    """The waivers that apply today and the expired ones, by item ID."""
    active: dict[str, Waiver] = {}
    expired: dict[str, Waiver] = {}
    for waiver in waivers:
        (expired if is_expired(waiver, today) else active)[waiver.item_id] = waiver
    return active, expired


__all__ = ["ConfigError", "is_expired", "load_waivers", "split_waivers"]
