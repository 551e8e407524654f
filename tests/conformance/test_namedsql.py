"""The kit's named-SQL loader: `-- name:` blocks, and a bad file refused with its name and why."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from conformance import namedsql
from conformance.namedsql import QueryFileError, parse

TWO_QUERIES = """\
-- A file comment before the first name belongs to no query.

-- name: count_jobs
-- jobs of one queue
SELECT count(*) FROM jobs WHERE queue = $1;

--name:lease_one
SELECT id
FROM jobs
LIMIT 1 ;
"""


def test_blocks_are_named_keep_their_comments_and_lose_the_semicolon() -> None:
    assert parse(TWO_QUERIES) == {
        "count_jobs": "-- jobs of one queue\nSELECT count(*) FROM jobs WHERE queue = $1",
        "lease_one": "SELECT id\nFROM jobs\nLIMIT 1",
    }


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("SELECT 1;\n", "q.sql: no '-- name:' blocks"),
        ("-- name: one\nSELECT 1;\n-- name: one\nSELECT 2;\n", "q.sql: query 'one' defined twice"),
        ("-- name: one\n;\n-- name: two\nSELECT 2;\n", "q.sql: query 'one' is empty"),
        # A name that is no identifier is no name line: the file has no blocks at all.
        ("-- name: 2fast\nSELECT 1;\n", "q.sql: no '-- name:' blocks"),
    ],
)
def test_a_malformed_file_is_refused_saying_which_and_why(text: str, says: str) -> None:
    with pytest.raises(QueryFileError) as raised:
        parse(text, source="q.sql")
    assert str(raised.value) == says
    assert isinstance(raised.value, ValueError)


def test_load_reads_a_package_file_once_read_only(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    package = f"namedsql_test_{uuid.uuid4().hex[:8]}"
    (tmp_path / package / "sql").mkdir(parents=True)
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "sql" / "ok.sql").write_text(TWO_QUERIES)
    (tmp_path / package / "sql" / "twice.sql").write_text(
        "-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    queries = namedsql.load(package, "sql/ok.sql")
    assert set(queries) == {"count_jobs", "lease_one"}
    assert namedsql.load(package, "sql/ok.sql") is queries  # parsed once
    with pytest.raises(TypeError):
        queries["count_jobs"] = "DROP TABLE jobs"  # type: ignore[index]
    with pytest.raises(QueryFileError) as raised:
        namedsql.load(package, "sql/twice.sql")
    assert str(raised.value) == f"{package}/sql/twice.sql: query 'a' defined twice"


@pytest.mark.parametrize(
    ("package", "resource"),
    [
        ("conformance.checks.live", "queries.sql"),
        ("conformance.chaos", "queries.sql"),
        ("benchmarks", "sql/engine.sql"),
        ("benchmarks", "sql/limits.sql"),
        # The server's file, read as data by the benchmark, parses the same way here.
        ("reference_server", "sql/jobs.sql"),
    ],
)
def test_every_shipped_query_file_loads(package: str, resource: str) -> None:
    queries = namedsql.load(package, resource)
    assert queries
    assert all(body.strip() and not body.endswith(";") for body in queries.values())
