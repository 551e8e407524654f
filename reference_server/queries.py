"""Named SQL queries, read once from reference_server/sql/*.sql.

A file holds blocks that start with a line `-- name: <query_name>`; the block's text up to the next
such line is the query. Comments inside a block stay with it (PostgreSQL ignores them).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

_NAME_LINE = re.compile(r"^--\s*name:\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*$", re.MULTILINE)


class QueryFileError(ValueError):
    """A query file that cannot be parsed into named blocks."""


def parse_queries(text: str, *, source: str = "<string>") -> dict[str, str]:
    """The named blocks of one SQL file's text."""
    matches = list(_NAME_LINE.finditer(text))
    if not matches:
        raise QueryFileError(f"{source}: no '-- name:' blocks")
    if text[: matches[0].start()].strip() and not all(
        line.startswith("--") or not line.strip()
        for line in text[: matches[0].start()].splitlines()
    ):
        raise QueryFileError(f"{source}: SQL before the first '-- name:' line")
    queries: dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        name = match["name"]
        if name in queries:
            raise QueryFileError(f"{source}: query {name!r} defined twice")
        if not body:
            raise QueryFileError(f"{source}: query {name!r} is empty")
        queries[name] = body
    return queries


@cache
def load(filename: str) -> Mapping[str, str]:
    """The queries of reference_server/sql/<filename>, parsed once per process."""
    path = resources.files("reference_server").joinpath("sql", filename)
    return MappingProxyType(parse_queries(path.read_text(encoding="utf-8"), source=filename))
