"""The pytest plugin: one item per check, markers, findings through user_properties, the fold."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.model import RunResult, Status, Verdict
from conformance.plugin import STATE_KEY, SUITE_PATH

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose runs can load the fake registry with `-p fakesuite`."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    monkeypatch.delenv("FAKE_CRASH", raising=False)
    return pytester


def run_result(pytester: pytest.Pytester, *args: str) -> tuple[pytest.HookRecorder, RunResult]:
    recorder = pytester.inline_run("-p", "fakesuite", str(SUITE_PATH), "-p", "no:cacheprovider",
                                   *args)
    finish = recorder.getcalls("pytest_sessionfinish")
    result = finish[0].session.config.stash[STATE_KEY].result
    assert result is not None
    return recorder, result


def statuses(result: RunResult) -> dict[str, Status]:
    return {item.entry.id: item.status for item in result.items}


def test_every_check_is_one_item_and_findings_fold_per_catalogue_item(
    suite: pytest.Pytester,
) -> None:
    recorder, result = run_result(suite)
    recorder.assertoutcome(passed=2, skipped=2)
    assert statuses(result) == {
        "FAKE-STATIC-OK": Status.PASSED,
        "FAKE-STATIC-BLOCKER": Status.PASSED,
        "FAKE-LIVE-MINOR": Status.NOT_APPLICABLE,
        "FAKE-ENV-FILE": Status.NOT_APPLICABLE,
        "FAKE-ATTESTED": Status.UNATTESTED,
    }
    assert result.verdict is Verdict.READY


def test_a_failed_finding_fails_the_item_and_blocks_the_verdict(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FAIL", "1")
    recorder, result = run_result(suite)
    recorder.assertoutcome(passed=1, skipped=2, failed=1)
    assert statuses(result)["FAKE-STATIC-BLOCKER"] is Status.FAILED
    assert result.verdict is Verdict.NOT_READY
    [blocker] = result.blockers()
    assert blocker.findings[0].expected == "on"
    assert blocker.findings[0].evidence[0].line == 3


def test_a_crashing_check_is_an_error_with_its_traceback(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CRASH", "1")
    _, result = run_result(suite)
    item = next(i for i in result.items if i.entry.id == "FAKE-STATIC-BLOCKER")
    assert item.status is Status.ERROR
    assert "RuntimeError: boom" in item.findings[0].message
    assert "boom" in (item.findings[0].evidence[0].output or "")


def test_failure_output_names_item_expected_actual_and_place(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FAIL", "1")
    out = suite.runpytest("-p", "fakesuite", str(SUITE_PATH), "-p", "no:cacheprovider")
    assert ("FAKE-STATIC-BLOCKER failed: the blocker is broken (expected on, actual off) "
            "[fake.env:3]") in out.stdout.lines
    out.stdout.fnmatch_lines(["*verdict: NOT READY*"])
    assert "Traceback" not in out.stdout.str()


def test_items_carry_phase_and_severity_markers_for_m_selection(suite: pytest.Pytester) -> None:
    recorder, result = run_result(suite, "-m", "post_deploy")
    recorder.assertoutcome(skipped=1)  # only the live check, not applicable without a target
    assert statuses(result)["FAKE-STATIC-OK"] is Status.SKIPPED  # deselected: not run
    recorder, _ = run_result(suite, "-m", "blocker")
    recorder.assertoutcome(passed=1)


def test_phase_option_limits_the_items_of_the_result(suite: pytest.Pytester) -> None:
    recorder, result = run_result(suite, "--tf-phase", "static")
    recorder.assertoutcome(passed=2, skipped=1)
    assert set(statuses(result)) == {"FAKE-STATIC-OK", "FAKE-STATIC-BLOCKER", "FAKE-ENV-FILE"}


def test_severity_option_keeps_that_severity_and_above(suite: pytest.Pytester) -> None:
    _, result = run_result(suite, "--tf-severity", "major")
    assert set(statuses(result)) == {
        "FAKE-STATIC-OK", "FAKE-STATIC-BLOCKER", "FAKE-ENV-FILE", "FAKE-ATTESTED"}


def test_context_comes_from_options(suite: pytest.Pytester, tmp_path: Path) -> None:
    env = tmp_path / "prod.env"
    env.write_text("APP_ENVIRONMENT=production\n")
    _, result = run_result(suite, "--tf-env-file", str(env))
    item = next(i for i in result.items if i.entry.id == "FAKE-ENV-FILE")
    assert item.status is Status.PASSED
    assert item.findings[0].message == "read prod.env"


def test_require_attestations_makes_unattested_blockers_block(suite: pytest.Pytester) -> None:
    _, result = run_result(suite, "--tf-require-attestations")
    assert result.verdict is Verdict.NOT_READY
    assert [i.entry.id for i in result.blockers()] == ["FAKE-ATTESTED"]


def test_attestation_and_waiver_files_apply(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FAKE_FAIL", "1")
    attestations = tmp_path / "attestations.yaml"
    attestations.write_text(
        "attestations:\n"
        "  - id: FAKE-ATTESTED\n    by: Ops Lead\n    on: 2026-01-05\n"
        "    evidence: https://tickets.example/CHG-1\n")
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text(
        "waivers:\n"
        "  - id: FAKE-STATIC-BLOCKER\n    justification: vendor fix due\n    owner: Ana\n"
        "    expires: 2999-12-31\n")
    _, result = run_result(suite, "--tf-attestations", str(attestations),
                           "--tf-waivers", str(waivers), "--tf-require-attestations")
    assert statuses(result)["FAKE-ATTESTED"] is Status.PASSED
    assert statuses(result)["FAKE-STATIC-BLOCKER"] is Status.WAIVED
    assert result.verdict is Verdict.READY_WITH_WAIVERS


def test_malformed_waiver_file_is_a_usage_error_with_its_line(
    suite: pytest.Pytester, tmp_path: Path
) -> None:
    waivers = tmp_path / "waivers.yaml"
    waivers.write_text("waivers:\n  - id: FAKE-STATIC-OK\n    owner: Ana\n    expires: soon\n"
                       "    justification: x\n")
    out = suite.runpytest("-p", "fakesuite", str(SUITE_PATH), "--tf-waivers", str(waivers))
    assert out.ret == pytest.ExitCode.USAGE_ERROR
    out.stderr.fnmatch_lines([f"*{waivers}:4: 'expires' is not a date (YYYY-MM-DD): 'soon'*"])


def test_findings_travel_from_xdist_workers_to_the_controller(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FAIL", "1")
    # Only the plugins named here, in the controller and both workers: a quick start.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    ini = suite.makeini("[pytest]\n")
    out = suite.runpytest_subprocess(
        "-c", str(ini), "-p", "conformance.plugin", "-p", "xdist.plugin", "-p", "fakesuite",
        str(SUITE_PATH), "-n", "2", "-p", "no:cacheprovider")
    out.stdout.fnmatch_lines([
        "*verdict: NOT READY (1 passed, 1 failed, 1 unattested, 2 not_applicable)*",
        "*blocker FAKE-STATIC-BLOCKER (failed)*",
    ])


def test_a_check_whose_worker_dies_is_an_error(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_EXIT", "1")
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    ini = suite.makeini("[pytest]\n")
    out = suite.runpytest_subprocess(
        "-c", str(ini), "-p", "conformance.plugin", "-p", "xdist.plugin", "-p", "fakesuite",
        str(SUITE_PATH), "-n", "2", "-p", "no:cacheprovider")
    out.stdout.fnmatch_lines(["*blocker FAKE-STATIC-BLOCKER (error)*"])


def test_plain_test_runs_are_left_alone(suite: pytest.Pytester) -> None:
    suite.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    suite.makepyfile(test_plain="def test_one():\n    assert 1 + 1 == 2\n")
    out = suite.runpytest("-p", "fakesuite")
    out.assert_outcomes(passed=1)
    assert "TaskForge conformance" not in out.stdout.str()


@pytest.mark.parametrize(("flags", "allowed"), [((), False), (("--tf-allow-writes",), True)])
def test_writes_to_a_foreign_target_only_when_allowed(
    suite: pytest.Pytester, flags: tuple[str, ...], allowed: bool
) -> None:
    """The fake live check reports the flag it was given; nothing is contacted."""
    _, result = run_result(suite, "--tf-target-url", "https://deploy.example.test", *flags)
    item = next(i for i in result.items if i.entry.id == "FAKE-LIVE-MINOR")
    assert item.findings[0].message == f"writes allowed: {allowed}"
    assert result.run.options["allow_writes"] is allowed
    assert result.run.target == "https://deploy.example.test"


def test_reference_target_from_a_target_file_allows_writes(
    suite: pytest.Pytester, tmp_path: Path
) -> None:
    from conformance.plugin import write_target_file
    from conformance.stack import Target

    target_file = tmp_path / "target.json"
    write_target_file(target_file, Target(base_url="https://127.0.0.1:9", provider="embedded",
                                          is_reference=True), token="t0k")
    assert target_file.stat().st_mode & 0o777 == 0o600
    _, result = run_result(suite, "--tf-target-file", str(target_file))
    item = next(i for i in result.items if i.entry.id == "FAKE-LIVE-MINOR")
    assert item.findings[0].message == "writes allowed: True"
    assert result.run.provider == "embedded"
    assert result.run.options["authenticated"] is True


def test_the_rate_limit_burst_runs_after_every_other_check(pytester: pytest.Pytester) -> None:
    """A burst that exhausts a foreign target's limit must not starve the checks after it."""
    from conformance.checks.all import registered_checks

    items, _ = pytester.inline_genitems(str(SUITE_PATH), "-p", "no:cacheprovider")
    names = [item.name for item in items]
    # Checks that disturb the target (the burst, slow clients) all come after the others.
    disturbing = {spec.name for spec in registered_checks() if spec.last}
    assert "conformance.checks.live.ratelimit.rate_limit" in disturbing
    first = min(names.index(name) for name in disturbing)
    assert set(names[first:]) == disturbing
    assert len(names) > 50
