"""Named SQL queries of benchmarks/sql/*.sql (blocks that start with `-- name: <query>`)."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

_NAME_LINE = re.compile(r"^--\s*name:\s*([A-Za-z_][A-Za-z0-9_]*)\s*$", re.MULTILINE)


@cache
def load(filename: str, package: str = "benchmarks") -> Mapping[str, str]:
    """The named queries of <package>/sql/<filename> (the reference server's are read as data)."""
    text = resources.files(package).joinpath("sql", filename).read_text(encoding="utf-8")
    matches = list(_NAME_LINE.finditer(text))
    queries: dict[str, str] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        queries[match[1]] = text[match.end():end].strip()
    return MappingProxyType(queries)
