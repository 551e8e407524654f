"""The named SQL queries of the live checks (queries.sql beside this module)."""

from __future__ import annotations

from conformance import namedsql


def query(name: str) -> str:
    return namedsql.load("conformance.checks.live", "queries.sql")[name]
