"""Named SQL files read once: blocks that start with a line `-- name: <query_name>`.

The one loader of the conformance suite (live checks, chaos) and the benchmark; the reference
server keeps its own (`reference_server/queries.py`), since nothing of the kit may be imported by
it. A block runs up to the next name line; its comments stay with it, its trailing `;` goes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from types import MappingProxyType

_NAME_LINE = re.compile(r"^--\s*name:\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*$", re.MULTILINE)


class QueryFileError(ValueError):
    """A query file that cannot be parsed into named blocks."""


def parse(text: str, *, source: str = "<string>") -> dict[str, str]:
    """The named blocks of one SQL file's text; an empty block or a name twice is an error."""
    matches = list(_NAME_LINE.finditer(text))
    if not matches:
        raise QueryFileError(f"{source}: no '-- name:' blocks")
    queries: dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end():end].strip().rstrip(";").rstrip()
        if match["name"] in queries:
            raise QueryFileError(f"{source}: query {match['name']!r} defined twice")
        if not body:
            raise QueryFileError(f"{source}: query {match['name']!r} is empty")
        queries[match["name"]] = body
    return queries


@cache
def load(package: str, resource: str) -> Mapping[str, str]:
    """The queries of a package's SQL file (e.g. `benchmarks`, `sql/limits.sql`), parsed once.

    Another package's file (the benchmark times the reference server's `sql/jobs.sql`) is read as
    data, never imported.
    """
    text = resources.files(package).joinpath(resource).read_text(encoding="utf-8")
    return MappingProxyType(parse(text, source=f"{package}/{resource}"))
