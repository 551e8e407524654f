"""Waiver and attestation files: loading, expiry, and malformed files named by line."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from conformance.attestations import load_attestations
from conformance.catalogue import load_catalogue
from conformance.model import CatalogueEntry, Finding, Kind, Phase, Severity, Status, Waiver
from conformance.verdicts import fold_items
from conformance.waivers import load_waivers, split_waivers
from conformance.yamlrecords import ConfigError

EXAMPLES = Path(__file__).parents[3] / "conformance" / "examples"
TODAY = date(2026, 11, 28)


def entry(item_id: str, kind: Kind = Kind.AUTOMATED) -> CatalogueEntry:
    return CatalogueEntry(id=item_id, section="6.1", guide_text="x", title="t",
                          phase=Phase.STATIC, severity=Severity.BLOCKER, kind=kind,
                          rationale="r", remediation="m",
                          attestation="a ticket" if kind is Kind.ATTESTED else None)


def failed(item_id: str) -> Finding:
    return Finding(item_id=item_id, status=Status.FAILED, check="c", message="broken")


def waiver(expires: date) -> Waiver:
    return Waiver(item_id="A-B", justification="j", owner="Ana", expires=expires)


def test_example_files_load_against_the_real_catalogue() -> None:
    known = set(load_catalogue())
    assert len(load_waivers(EXAMPLES / "waivers.yaml", known)) == 2
    assert len(load_attestations(EXAMPLES / "attestations.yaml", known, TODAY)) == 3


def test_waiver_holds_through_its_expiry_date_and_not_a_day_longer() -> None:
    assert split_waivers([waiver(TODAY)], TODAY)[0]
    assert split_waivers([waiver(date(2026, 11, 27))], TODAY)[1]


def test_valid_waiver_turns_a_failure_into_waived() -> None:
    [item] = fold_items([entry("A-B")], {"A-B": [failed("A-B")]}, checked_ids={"A-B"},
                        waivers=[waiver(date(2027, 1, 1))], today=TODAY)
    assert item.status is Status.WAIVED
    assert item.waiver is not None


def test_expired_waiver_leaves_the_real_status_and_says_so() -> None:
    [item] = fold_items([entry("A-B")], {"A-B": [failed("A-B")]}, checked_ids={"A-B"},
                        waivers=[waiver(date(2026, 1, 1))], today=TODAY)
    assert item.status is Status.FAILED
    assert item.findings[-1].message.startswith("waiver expired on 2026-01-01 (owner: Ana)")


def test_waiver_does_not_touch_a_passing_item() -> None:
    passing = Finding(item_id="A-B", status=Status.PASSED, check="c")
    [item] = fold_items([entry("A-B")], {"A-B": [passing]}, checked_ids={"A-B"},
                        waivers=[waiver(date(2027, 1, 1))], today=TODAY)
    assert (item.status, item.waiver) == (Status.PASSED, None)


def test_attested_items_pass_with_an_attestation_and_are_unattested_without(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("attestations:\n  - id: OPS-X\n    by: Ana\n    on: 2026-11-01\n"
                    "    evidence: https://wiki/x\n")
    attestations = load_attestations(path, {"OPS-X", "OPS-Y"}, TODAY)
    items = fold_items([entry("OPS-X", Kind.ATTESTED), entry("OPS-Y", Kind.ATTESTED)], {},
                       checked_ids=set(), attestations=attestations, today=TODAY)
    assert [i.status for i in items] == [Status.PASSED, Status.UNATTESTED]
    assert items[0].attestation is not None
    assert "attested by Ana on 2026-11-01" in items[0].findings[0].message


def test_automated_item_without_a_check_is_skipped_with_the_reason() -> None:
    [item] = fold_items([entry("A-B")], {}, checked_ids=set(), today=TODAY)
    assert item.status is Status.SKIPPED
    assert item.findings[0].message == "no check is registered for this item"


GOOD = "  - id: A-B\n    justification: j\n    owner: o\n    expires: 2027-01-01\n"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("waivers:\n  - id: A-B\n    owner: [o\n", 4, "not valid YAML"),
        ("waivers:\n" + GOOD + "  - id: A-B\n    justification: j\n    owner: o\n"
         "    expires: 2027-01-01\n", 6, "second waiver for 'A-B' (first on line 2)"),
        ("waivers:\n  - id: A-B\n    justification: j\n    owner: o\n    expires: 31/01/2027\n",
         5, "'expires' is not a date (YYYY-MM-DD): '31/01/2027'"),
        ("waivers:\n  - id: A-B\n    justification: j\n    expires: 2027-01-01\n", 2,
         "missing 'owner'"),
        ("waivers:\n  - id: A-B\n    justification: j\n    owner: o\n    expires: 2027-01-01\n"
         "    approved: yes\n", 6, "unknown field 'approved'"),
        ("waivers:\n  - id: NOPE-X\n    justification: j\n    owner: o\n"
         "    expires: 2027-01-01\n", 2, "unknown catalogue item 'NOPE-X'"),
        ("waivers:\n  - just a line\n", 2, "each entry must be a mapping"),
        ("waiver:\n" + GOOD, 1, "unexpected top-level key"),
        ("waivers: 3\n", 1, "'waivers' must be a list of mappings"),
    ],
)
def test_malformed_waivers_name_file_line_and_problem(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    path = tmp_path / "waivers.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_waivers(path, {"A-B"})
    assert str(caught.value).startswith(f"{path}:{line}: {problem}")


def test_a_missing_waivers_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_waivers(tmp_path / "absent.yaml")


def test_attestation_dated_in_the_future_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("attestations:\n  - id: OPS-X\n    by: Ana\n    on: 2030-01-01\n"
                    "    evidence: e\n")
    with pytest.raises(ConfigError, match=r":4: 'on' is in the future: 2030-01-01"):
        load_attestations(path, {"OPS-X"}, TODAY)


def test_empty_files_hold_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    assert load_waivers(path) == []
    path.write_text("attestations:\n")
    assert load_attestations(path) == []


def recurring(item_id: str, phase: Phase) -> CatalogueEntry:
    return CatalogueEntry(id=item_id, section="8.1", guide_text="x", title="t", phase=phase,
                          severity=Severity.MAJOR, kind=Kind.ATTESTED, rationale="r",
                          remediation="m", attestation="a log")


@pytest.mark.parametrize(
    ("phase", "on", "grace", "status"),
    [
        (Phase.DAILY, "2026-11-27", "", Status.PASSED),  # yesterday: still within a day
        (Phase.DAILY, "2026-11-26", "", Status.UNATTESTED),  # lapsed after 2026-11-27
        (Phase.DAILY, "2026-11-26", "    grace_days: 2\n", Status.PASSED),
        (Phase.WEEKLY, "2026-11-21", "", Status.PASSED),
        (Phase.WEEKLY, "2026-11-20", "", Status.UNATTESTED),
        (Phase.MONTHLY, "2026-10-28", "", Status.PASSED),
        (Phase.MONTHLY, "2026-10-27", "", Status.UNATTESTED),
        (Phase.PRE_DEPLOY, "2025-01-01", "", Status.PASSED),  # attested once, holds
    ],
)
def test_attestations_of_recurring_items_lapse_after_their_period(
    tmp_path: Path, phase: Phase, on: str, grace: str, status: Status
) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(f"attestations:\n  - id: OPS-X\n    by: Ana\n    on: {on}\n"
                    f"    evidence: https://wiki/x\n{grace}")
    attestations = load_attestations(path, {"OPS-X"}, TODAY)
    [item] = fold_items([recurring("OPS-X", phase)], {}, checked_ids=set(),
                        attestations=attestations, today=TODAY)
    assert item.status is status
    if status is Status.UNATTESTED:
        assert "lapsed after" in item.findings[0].message
        assert f"by Ana on {on}" in item.findings[0].message


def test_grace_days_must_be_a_number(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text("attestations:\n  - id: OPS-X\n    by: Ana\n    on: 2026-11-01\n"
                    "    evidence: e\n    grace_days: two\n")
    with pytest.raises(ConfigError, match="grace_days"):
        load_attestations(path, {"OPS-X"}, TODAY)
