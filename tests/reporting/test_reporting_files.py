"""The five report files: written atomically, valid against their formats, secrets masked."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
from junitparser import Error, Failure, JUnitXml, Properties, Property, Skipped
from reporting_factories import (
    DB_PASSWORD,
    ENV_SECRET,
    SECRET_TOKEN,
    item,
    mixed_items,
    run_result,
)

from conformance.model import Evidence, Phase, RunResult, Status
from conformance.reporting import FILENAMES, ReportError, redact, results, sarif, write_reports

SARIF_SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"


def test_write_reports_writes_all_five_files_and_points_latest(tmp_path: Path) -> None:
    run_dir = write_reports(run_result(mixed_items()), tmp_path)

    assert run_dir == tmp_path / "run-1"
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(FILENAMES)
    assert all((run_dir / name).stat().st_size > 0 for name in FILENAMES)
    latest = tmp_path / "latest"
    assert latest.is_symlink()
    assert latest.resolve() == run_dir.resolve()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_latest_moves_to_the_newest_run(tmp_path: Path) -> None:
    write_reports(run_result(mixed_items(), run_id="first"), tmp_path)
    second = write_reports(run_result(mixed_items(), run_id="second"), tmp_path)

    assert os.readlink(tmp_path / "latest") == "second"
    assert (tmp_path / "latest" / "results.json").read_text() == (
        second / "results.json"
    ).read_text()
    assert (tmp_path / "first" / "results.json").exists()


def test_a_failing_renderer_leaves_no_half_written_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything is rendered before anything is written, and each write is a rename."""
    write_reports(run_result(mixed_items()), tmp_path)
    before = (tmp_path / "run-1" / "readiness.md").read_text()

    def broken(result: object) -> str:
        raise RuntimeError("template bug")

    from conformance import reporting

    renderers = tuple(
        (name, broken if name == "readiness.html" else render)
        for name, render in reporting.RENDERERS
    )
    monkeypatch.setattr(reporting, "RENDERERS", renderers)
    changed = run_result([item("ONLY-ONE", Status.FAILED)])
    with pytest.raises(RuntimeError):
        write_reports(changed, tmp_path)

    assert (tmp_path / "run-1" / "readiness.md").read_text() == before
    assert sorted(p.name for p in (tmp_path / "run-1").iterdir()) == sorted(FILENAMES)


def test_run_id_that_is_not_a_directory_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="cannot name a directory"):
        write_reports(run_result(mixed_items(), run_id="../escape"), tmp_path)


def test_results_json_validates_against_its_schema(tmp_path: Path) -> None:
    run_dir = write_reports(run_result(mixed_items()), tmp_path)
    document = json.loads((run_dir / "results.json").read_text())

    schema = json.loads(results.SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(document)
    assert document["schema_version"] == results.SCHEMA_VERSION
    assert document["run"]["git_commit"] == "0123456789abcdef0123456789abcdef01234567"
    assert document["run"]["suite_version"] == "0.1.0"
    record = next(i for i in document["items"] if i["id"] == "ENV-JWT-SECRET-STRENGTH")
    assert record["expected"] == "at least 32 characters"
    assert record["actual"] == "16 characters"
    assert record["evidence"][0]["file"] == "compose/.env"
    assert record["evidence"][0]["line"] == 12
    assert record["remediation"] == "Fix ENV-JWT-SECRET-STRENGTH like this."
    assert record["duration_seconds"] == 0.25
    assert {i["status"] for i in document["items"]} == {s.value for s in Status}


def test_schema_rejects_a_record_with_an_unknown_status(tmp_path: Path) -> None:
    document = results.to_document(run_result(mixed_items()))
    document["items"][0]["status"] = "mostly-passed"

    with pytest.raises(ReportError, match="items/0/status"):
        results.validate(document)


def test_results_json_reads_back_into_the_same_run(tmp_path: Path) -> None:
    original = redact.redact_result(run_result(mixed_items()))
    run_dir = write_reports(original, tmp_path)

    loaded = results.load(run_dir)

    assert loaded == original
    assert loaded.verdict is original.verdict
    assert results.render(loaded) == (run_dir / "results.json").read_text()


def test_results_json_of_a_newer_major_version_is_refused(tmp_path: Path) -> None:
    run_dir = write_reports(run_result(mixed_items()), tmp_path)
    document = json.loads((run_dir / "results.json").read_text())
    document["schema_version"] = "2.0"
    (run_dir / "results.json").write_text(json.dumps(document))

    with pytest.raises(ReportError, match=r"schema_version 2\.0"):
        results.load(run_dir)


def test_junit_is_accepted_by_junitparser_with_one_case_per_item(tmp_path: Path) -> None:
    result = run_result(mixed_items())
    run_dir = write_reports(result, tmp_path)

    xml = JUnitXml.fromfile(str(run_dir / "junit.xml"))
    suites = list(xml)
    cases = {case.name: case for suite in suites for case in suite}

    assert len(cases) == len(result.items)
    assert suites[0].tests == 11
    assert suites[0].failures == 2
    assert suites[0].errors == 2  # the error and the blocked item
    blocker = cases["NET-HTTPS-ONLY Title of NET-HTTPS-ONLY"]
    assert blocker.classname == "10.2"
    failure = blocker.result[0]
    assert isinstance(failure, Failure)
    assert "expected: HTTPS only" in (failure.text or "")
    assert "actual: plain HTTP answered 200" in (failure.text or "")
    case_properties = blocker.child(Properties)  # type: ignore[no-untyped-call]
    assert case_properties is not None
    properties = {p.name: p.value for p in case_properties.iterchildren(Property)}
    assert properties["guide_section"] == "10.2"
    assert properties["severity"] == "blocker"
    assert isinstance(cases["HOST-ENV-PERMS Title of HOST-ENV-PERMS"].result[0], Error)
    waived = cases["TLS-CERT-PINNED Title of TLS-CERT-PINNED"].result[0]
    assert isinstance(waived, Skipped)
    assert "TLS terminates at the load balancer" in (waived.message or "")
    for name in ("MON-ALERTS", "BACKUP-DAILY"):
        case = cases[f"{name} Title of {name}"]
        assert isinstance(case.result[0], Skipped)
    assert cases["ENV-LOG-LEVEL Title of ENV-LOG-LEVEL"].is_passed


def _sarif(run_dir: Path) -> dict[str, object]:
    document: dict[str, object] = json.loads((run_dir / "results.sarif").read_text())
    return document


def test_sarif_validates_against_the_sarif_2_1_0_schema(tmp_path: Path) -> None:
    run_dir = write_reports(run_result(mixed_items()), tmp_path)
    schema = json.loads(SARIF_SCHEMA.read_text())

    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(_sarif(run_dir))


def test_sarif_schema_check_catches_a_malformed_log() -> None:
    """The vendored schema really constrains results (a level outside the spec's enum fails)."""
    schema = json.loads(SARIF_SCHEMA.read_text())
    document = json.loads(sarif.render(run_result(mixed_items())))
    document["runs"][0]["results"][0]["level"] = "catastrophic"

    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(document)


def test_sarif_has_rules_from_the_catalogue_locations_and_suppressions(tmp_path: Path) -> None:
    run_dir = write_reports(run_result(mixed_items()), tmp_path)
    sarif_run = _sarif(run_dir)["runs"][0]  # type: ignore[index]

    rules = {r["id"]: r for r in sarif_run["tool"]["driver"]["rules"]}
    assert len(rules) == 11
    rule = rules["ENV-JWT-SECRET-STRENGTH"]
    assert rule["shortDescription"]["text"] == "Title of ENV-JWT-SECRET-STRENGTH"
    assert rule["fullDescription"]["text"] == "Why ENV-JWT-SECRET-STRENGTH matters."
    assert rule["help"]["text"] == "Fix ENV-JWT-SECRET-STRENGTH like this."
    assert rule["properties"]["severity"] == "major"

    by_rule = {r["ruleId"]: r for r in sarif_run["results"]}
    assert "ENV-LOG-LEVEL" not in by_rule  # passed items are rules without results
    static = by_rule["ENV-JWT-SECRET-STRENGTH"]
    location = static["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "compose/.env"
    assert location["region"]["startLine"] == 12
    assert "suppressions" not in static
    waived = by_rule["TLS-CERT-PINNED"]
    assert waived["suppressions"] == [
        {
            "kind": "external",
            "status": "accepted",
            "justification": "TLS terminates at the load balancer",
            "properties": waived["suppressions"][0]["properties"],
        }
    ]
    assert by_rule["NET-HTTPS-ONLY"]["level"] == "error"


def test_no_report_file_contains_a_secret(tmp_path: Path) -> None:
    """Bearer tokens, passwords in URLs, cookies and env secrets are masked in every file."""
    run_dir = write_reports(run_result(mixed_items()), tmp_path)

    for name in FILENAMES:
        text = (run_dir / name).read_text()
        for secret in (SECRET_TOKEN, DB_PASSWORD, ENV_SECRET, "abc123secret"):
            assert secret not in text, f"{secret} leaked into {name}"
    curl = json.loads((run_dir / "results.json").read_text())["items"][0]["evidence"][0]["curl"]
    assert curl == "curl -sS -H 'Authorization: ***' 'https://admin:***@127.0.0.1:8443/health'"


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("postgresql://taskforge:pw123@db:5432/tf", "postgresql://taskforge:***@db:5432/tf"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: ***"),
        ("GET /jobs?access_token=abcdef123456&limit=5", "GET /jobs?access_token=***&limit=5"),
        ('{"email": "a@b.c", "password": "pw-plain"}', '{"email": "a@b.c", "password": "***"}'),
        ("curl -u admin:pw-plain https://h/", "curl -u admin:*** https://h/"),
        ("REDIS_PASSWORD=redispw\nLOG_LEVEL=info", "REDIS_PASSWORD=***\nLOG_LEVEL=info"),
        ("LOG_LEVEL=info", "LOG_LEVEL=info"),
        ("Bearer authentication required", "Bearer authentication required"),
        ("got bearer abc.def-123_x in logs", "got bearer *** in logs"),
    ],
)
def test_redact_text_masks_credentials(raw: str, masked: str) -> None:
    assert redact.redact_text(raw) == masked


def test_awkward_but_legal_runs_still_write_valid_files(tmp_path: Path) -> None:
    """Naive timestamps, Path options, an unusual evidence kind, terminal escapes in output."""
    odd = Evidence(kind="sql", summary="SHOW max_connections", output="\x1b[31m100\x1b[0m")
    spaced = Evidence(kind="file", file="conf/my nginx.conf", line=3)
    base = run_result([item("DB-MAX-CONN", Status.ERROR, evidence=(odd, spaced))])
    naive = dataclasses.replace(
        base.run,
        started_at=datetime(2026, 11, 28, 20, 0, 0),
        finished_at=datetime(2026, 11, 28, 20, 1, 0),
        options={"env_file": Path("/etc/taskforge/.env")},
    )
    run_dir = write_reports(RunResult(run=naive, items=base.items), tmp_path)

    loaded = results.load(run_dir)  # validates against the schema on the way in
    assert loaded.run.options == {"env_file": "/etc/taskforge/.env"}
    assert loaded.run.started_at.tzinfo is not None
    JUnitXml.fromfile(str(run_dir / "junit.xml"))  # no control character broke the XML
    document = _sarif(run_dir)
    jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text())).validate(document)
    location = document["runs"][0]["results"][0]["locations"][0]  # type: ignore[index]
    assert location["physicalLocation"]["artifactLocation"]["uri"] == "conf/my%20nginx.conf"


def test_a_real_latest_directory_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "latest").mkdir()
    (tmp_path / "latest" / "keep.txt").write_text("someone's notes")

    with pytest.raises(FileExistsError, match="not a symlink"):
        write_reports(run_result(mixed_items()), tmp_path)

    assert (tmp_path / "latest" / "keep.txt").read_text() == "someone's notes"
    assert (tmp_path / "run-1" / "results.json").exists()


def test_html_is_self_contained_and_follows_the_guide_order(tmp_path: Path) -> None:
    run_dir = write_reports(run_result(mixed_items()), tmp_path)
    page = (run_dir / "readiness.html").read_text()

    assert "<link" not in page
    assert " src=" not in page
    assert "@import" not in page
    assert "default-src 'none'" in page  # the browser itself refuses any network load
    assert '§ 3.1 <span lang="id">File Environment (.env)</span>' in page
    sections = [page.index(f'data-section="{s}"') for s in ("3.1", "3.2", "4.1", "6", "10.2")]
    assert sections == sorted(sections)
    assert '<blockquote lang="id">Teks panduan untuk NET-HTTPS-ONLY (bahasa Indonesia).' in page
    assert page.index('id="blockers"') < page.index('class="guide-section"')


def test_host_findings_carry_their_host_into_results_json_and_readiness_md(
        tmp_path: Path) -> None:
    judged = item("HOST-DOCKER-GROUP", Status.FAILED, section="4.2", phase=Phase.PRE_DEPLOY,
                  actual="deploy sudo")
    judged = dataclasses.replace(judged, findings=tuple(
        dataclasses.replace(f, host="ssh://deploy@203.0.113.5") for f in judged.findings))
    run_dir = write_reports(run_result([judged]), tmp_path)

    document = json.loads((run_dir / "results.json").read_text())
    results.validate(document)
    assert document["items"][0]["findings"][0]["host"] == "ssh://deploy@203.0.113.5"
    assert results.load(run_dir).items[0].findings[0].host == "ssh://deploy@203.0.113.5"
    assert "on `ssh://deploy@203.0.113.5`" in (run_dir / "readiness.md").read_text()


def test_sarif_results_always_have_a_region_and_the_guide_section(tmp_path: Path) -> None:
    """A finding about a file as a whole (no line) points at line 1 of it."""
    whole_file = item("ENV-FILE-MODE", Status.FAILED, section="4.2",
                      evidence=(Evidence(kind="file", file="compose/.env", line=None),))
    run_dir = write_reports(run_result([whole_file]), tmp_path)
    (result,) = _sarif(run_dir)["runs"][0]["results"]  # type: ignore[index]
    assert result["locations"][0]["physicalLocation"]["region"] == {"startLine": 1}
    assert result["properties"]["guideSection"] == "4.2"
