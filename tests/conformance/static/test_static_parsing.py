"""The parsers under the static checks: the export simulation, image references, broken files."""

from __future__ import annotations

from pathlib import Path

import pytest
from static_helpers import run_checks

from conformance.checks.static.compose import image_pin_problem
from conformance.checks.static.dockerfile import debian_release, parse_dockerfile
from conformance.checks.static.env import parse_env, secret_weakness, simulate_export
from conformance.model import Status


@pytest.mark.parametrize(
    ("line", "exported"),
    [
        ("A=plain", {"A": "plain"}),
        ('A="quoted value"', {"A": "quoted"}),  # xargs strips the quotes, the shell splits
        ("A='x'y", {"A": "xy"}),
        ("A=back\\ slash", {"A": "back"}),
        ("A=1  # comment", {"A": "1"}),
        ("A=$HOME", {"A": "$HOME"}),  # expansions are not expanded again
    ],
)
def test_export_simulation(line: str, exported: dict[str, str]) -> None:
    result, _problems = simulate_export([line])
    assert {k: v for k, (v, _) in result.items()} == exported


def test_export_stops_at_an_unmatched_quote() -> None:
    result, problems = simulate_export(["A=1", "B=it's", "C=3"])
    assert set(result) == {"A"}
    assert problems[0].line == 2
    assert "unmatched single quote" in problems[0].message


def test_export_skips_comment_lines_only_at_column_one() -> None:
    result, problems = simulate_export(["# comment", "  # indented comment", "A=1"])
    assert set(result) == {"A"}
    assert problems and problems[0].line == 2  # grep -v '^#' keeps it; export chokes on '#'


def test_env_file_read_as_compose_reads_it(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("# c\nexport A=1\nB='two words'\nC=3 # note\nD=\n")
    env = parse_env(path)
    assert {n: (v.value, v.line) for n, v in env.variables.items()} == {
        "A": ("1", 2), "B": ("two words", 3), "C": ("3", 4), "D": ("", 5),
    }
    assert env.get("D") is None


def test_malformed_env_line_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=1\nthis is not an assignment\n")
    path.chmod(0o600)
    findings = run_checks(("ENV-LOG-FORMAT",), env_file=path)
    assert [(f.status, f.evidence[0].line) for f in findings] == [(Status.ERROR, 2)]


def test_malformed_compose_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "docker-compose.yml"
    path.write_text("services:\n  app:\n    image: [unclosed\n")
    findings = run_checks(("COMPOSE-SCHEMA",), compose_file=path)
    assert [f.status for f in findings] == [Status.ERROR]
    assert findings[0].evidence[0].line == 4
    assert "not valid YAML" in findings[0].message


def test_schema_errors_point_at_the_key(tmp_path: Path) -> None:
    path = tmp_path / "docker-compose.yml"
    path.write_text("services:\n  app:\n    image: x:1\n    restart_policy: always\n")
    (finding,) = run_checks(("COMPOSE-SCHEMA",), compose_file=path)
    assert finding.status is Status.FAILED
    assert finding.evidence[0].line == 2  # the service holding the unknown key


@pytest.mark.parametrize(
    ("reference", "pinned"),
    [
        ("redis:7-alpine", True),
        ("postgres@sha256:" + "a" * 64, True),
        ("registry.local:5000/team/app:1.2", True),
        ("registry.local:5000/team/app", False),
        ("prom/prometheus:latest", False),
        ("nginx", False),
    ],
)
def test_image_pinning(reference: str, pinned: bool) -> None:
    assert (image_pin_problem(reference) is None) is pinned


@pytest.mark.parametrize(
    ("image", "release"),
    [
        # rust-lang/docker-rust's default variant: bullseye until 1.71.1, bookworm until 1.89.0.
        ("rust:1.70", "bullseye"),
        ("rust:1.70.0-slim", "bullseye"),
        ("rust:1.65", "bullseye"),
        ("rust:1.71.0", "bullseye"),
        ("rust:1.71", None),  # 1.71.1 was published the day the default changed
        ("rust:1.72", "bookworm"),
        ("rust:1.88.0", "bookworm"),
        ("rust:1.89", None),
        ("rust:1.90-slim", "trixie"),
        ("rust:1.54", None),
        ("rust:latest", None),
        ("rust", None),
        ("rust:1.70-alpine3.18", "alpine"),
        ("registry.local:5000/rust", None),
        ("rust:1.70-slim-bullseye", "bullseye"),
        ("debian:bullseye-slim", "bullseye"),
        ("debian:12", "bookworm"),
        ("python:3.11-slim-bookworm", "bookworm"),
        ("alpine:3.20", "alpine"),
        ("python:3.11", None),
    ],
)
def test_debian_release(image: str, release: str | None) -> None:
    assert debian_release(image) == release


def test_dockerfile_arg_defaults_resolve_in_from(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text("ARG BASE=python:3.11-slim-bookworm\nFROM ${BASE} AS run\nUSER 1000\n")
    (stage,) = parse_dockerfile(path).stages
    assert (stage.image, stage.name) == ("python:3.11-slim-bookworm", "run")


@pytest.mark.parametrize(
    ("value", "weak"),
    [
        (None, "is not set"),
        ("your_super_secret_jwt_key_here_must_be_at_least_32_chars_long", "placeholder"),
        ("Zq9-short", "shorter than 32"),
        ("a" * 64, "too little entropy"),
        ("abababababababababababababababab", "too little entropy"),
        ("kP3vX9qL2mN8rT5wY7zB4cD6fG1hJ0sA-_QeRtUi", None),
    ],
)
def test_secret_weakness(value: str | None, weak: str | None) -> None:
    found = secret_weakness(value)
    assert (found is None) if weak is None else (found is not None and weak in found)


def test_wildcard_cors_origin(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("CORS_ALLOWED_ORIGINS=*\n")
    path.chmod(0o600)
    (finding,) = [f for f in run_checks(("ENV-CORS",), env_file=path)]
    assert (finding.status, finding.message) == (
        Status.FAILED, "CORS allows every origin (wildcard)"
    )
    export = run_checks(("ENV-SURVIVES",), env_file=path)
    assert any("glob characters" in f.message for f in export)


def test_variable_set_twice(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("LOG_LEVEL=info\nA=1\nLOG_LEVEL=debug\n")
    (finding,) = run_checks(("ENV-VALUE",), env_file=path)
    assert (finding.message, finding.evidence[0].line) == (
        "LOG_LEVEL is set twice; line 3 wins", 1
    )
