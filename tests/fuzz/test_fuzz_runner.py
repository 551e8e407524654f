"""The fuzz runner without a server: options, safety rules, the command line, result folding."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from conformance.fuzz import hooks
from conformance.fuzz.credentials import AuthHeader
from conformance.fuzz.results import curl_command, item_id, read_events, summarise
from conformance.fuzz.runner import (
    AUTH_ENV,
    CHECKS,
    DEFAULT_EXTERNAL_RATE_LIMIT,
    FuzzOptions,
    FuzzTarget,
    UsageError,
    contract_document,
    schemathesis_command,
    validate,
    write_config,
)
from conformance.model import ExitStatus

EXTERNAL = "https://api.example.test"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (FuzzOptions(target_url=EXTERNAL, token="t"), "--allow-writes"),
        (FuzzOptions(target_url=EXTERNAL, allow_writes=True), "--token or --api-key"),
        (FuzzOptions(target_url="ftp://x", allow_writes=True, token="t"), "http(s) URL"),
        (FuzzOptions(rate_limit="fast"), "--rate-limit"),
        (FuzzOptions(checks=("not_a_server_error", "vibes")), "--checks"),
        (FuzzOptions(phases=("fuzzing", "chaos")), "--phases"),
        (FuzzOptions(max_examples=0), "--max-examples"),
        (FuzzOptions(token="t", api_key="k"), "not both"),
    ],
)
def test_bad_options_are_refused(options: FuzzOptions, says: str) -> None:
    with pytest.raises(UsageError, match=says.replace("(", r"\(").replace(")", r"\)")):
        validate(options)


def test_external_target_without_allow_writes_exits_2_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conformance.fuzz", "--target-url", EXTERNAL, "--token", "t"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: fuzzing creates data")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--frobnicate"], "error: unrecognized arguments: --frobnicate"),
        (["--max-examples", "many"], "error: argument --max-examples: invalid int value"),
        (["--stack", "nowhere"], "error: argument --stack: invalid choice: 'nowhere'"),
    ],
)
def test_a_bad_option_is_one_line_and_the_usage_status(argv: list[str], says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "conformance.fuzz", *argv],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == ExitStatus.USAGE
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(says)
    assert done.stdout == ""


def test_external_targets_get_a_rate_cap_and_the_credential_stays_out_of_argv(
    tmp_path: Path,
) -> None:
    options = FuzzOptions(target_url=EXTERNAL, allow_writes=True, token="s3cr3t-token")
    target = FuzzTarget(base_url=EXTERNAL, is_reference=False, provider="external")
    config = write_config(tmp_path, AuthHeader.bearer("s3cr3t-token"))
    command = schemathesis_command(options, target, "openapi.json", tmp_path, config)
    assert command[command.index("--rate-limit") + 1] == DEFAULT_EXTERNAL_RATE_LIMIT
    assert command[command.index("--checks") + 1] == ",".join(CHECKS)
    assert command[command.index("--seed") + 1] == str(options.seed)
    assert not any("s3cr3t" in part for part in command)
    assert "s3cr3t" not in config.read_text(encoding="utf-8")
    assert f"${{{AUTH_ENV}}}" in config.read_text(encoding="utf-8")


def test_reference_targets_run_without_a_rate_cap(tmp_path: Path) -> None:
    target = FuzzTarget(base_url="http://127.0.0.1:1", is_reference=True, provider="embedded")
    config = write_config(tmp_path, AuthHeader.api_key("tf_x"))
    command = schemathesis_command(FuzzOptions(), target, "openapi.json", tmp_path, config)
    assert "--rate-limit" not in command


def test_the_contract_document_is_found_without_importing_the_server() -> None:
    document = json.loads(contract_document().read_text(encoding="utf-8"))
    assert document["openapi"].startswith("3.1")


def test_curl_reproducer_masks_credentials() -> None:
    request = {
        "method": "POST",
        "uri": "http://127.0.0.1:8000/api/v1/jobs",
        "headers": {
            "Authorization": ["Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"],
            "X-API-Key": ["tf_abcdefabcdefabcdefabcdefabcdefab"],
            "User-Agent": ["schemathesis/4"],
            "Content-Type": ["application/json"],
        },
        "body": {"$base64": base64.b64encode(b'{"priority": 9}').decode()},
    }
    curl = curl_command(request)
    assert curl.startswith("curl -X POST http://127.0.0.1:8000/api/v1/jobs")
    assert "eyJ" not in curl and "tf_abc" not in curl
    assert "User-Agent" not in curl
    assert "--data-raw '{\"priority\": 9}'" in curl


def _scenario(phase: str, cases: dict[str, tuple[str, str, list[tuple[str, bool]]]]) -> str:
    """One ScenarioFinished event: case id -> (method, path, [(check, passed)])."""
    recorder: dict[str, Any] = {"label": "x", "cases": {}, "checks": {}, "interactions": {}}
    for case_id, (method, path, checks) in cases.items():
        recorder["cases"][case_id] = {"value": {"method": method, "path": path}}
        recorder["interactions"][case_id] = {
            "request": {"method": method, "uri": f"http://h{path}", "headers": {}},
            "response": {"status_code": 500},
        }
        recorder["checks"][case_id] = [
            {"name": name, "status": "success"}
            if passed
            else {
                "name": name,
                "status": "failure",
                "failure_info": {
                    "failure": {
                        "operation": f"{method} {path}",
                        "code": "ST101",
                        "title": "Server error",
                        "message": "boom",
                    }
                },
            }
            for name, passed in checks
        ]
    return json.dumps({"ScenarioFinished": {"phase": phase, "recorder": recorder}})


def test_events_fold_into_one_record_per_check_family(tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    lines = [
        json.dumps({"Initialize": {"seed": 7, "schemathesis_version": "4.x"}}),
        _scenario(
            "coverage",
            {
                "a": ("GET", "/health", [("not_a_server_error", True)]),
                "b": ("POST", "/api/v1/jobs", [("not_a_server_error", False)]),
                "c": ("TRACE", "/health", [("not_a_server_error", True)]),
            },
        ),
        _scenario("fuzzing", {"d": ("POST", "/api/v1/jobs", [("not_a_server_error", False)])}),
        json.dumps({"EngineFinished": {}}),
    ]
    events.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tally = read_events(events)
    summary = summarise(
        tally,
        checks=("not_a_server_error", "use_after_free"),
        operations=["GET /health", "POST /api/v1/jobs", "GET /ready"],
    )
    assert tally.seed == 7 and tally.finished
    assert summary["requests_per_operation"] == {
        "GET /health": 1,
        "POST /api/v1/jobs": 2,
        "GET /ready": 0,
    }
    assert summary["requests_undocumented_methods"] == 1
    assert summary["totals"]["operations_exercised"] == 2
    crash, never = summary["checks"]
    assert (crash["check"], crash["status"], crash["failed"], crash["checked"]) == (
        "not_a_server_error",
        "failed",
        2,
        4,
    )
    assert crash["item_id"] == item_id("not_a_server_error") == "API-FUZZ-NOT-A-SERVER-ERROR"
    (group,) = crash["failures"]
    assert (group["operation"], group["count"]) == ("POST /api/v1/jobs", 2)
    assert group["examples"][0]["curl"] == "curl -X POST http://h/api/v1/jobs"
    assert never["status"] == "skipped"


def _case(path: str, body: object, method: str = "POST") -> SimpleNamespace:
    return SimpleNamespace(operation=SimpleNamespace(path=path, method=method), body=body)


def test_hook_sends_valid_lease_waits_as_zero_and_leaves_invalid_ones() -> None:
    valid = _case(hooks.LEASE_PATH, {"max_jobs": 1, "wait_seconds": 30})
    invalid = _case(hooks.LEASE_PATH, {"max_jobs": 1, "wait_seconds": 31})
    typed = _case(hooks.LEASE_PATH, {"max_jobs": 1, "wait_seconds": True})
    for case in (valid, invalid, typed):
        hooks.before_call(None, case, {})
    assert valid.body["wait_seconds"] == 0
    assert invalid.body["wait_seconds"] == 31
    assert typed.body["wait_seconds"] is True


def test_hook_moves_past_api_key_expiry_into_the_future() -> None:
    past = _case(hooks.API_KEYS_PATH, {"name": "k", "expires_at": "2001-01-01T00:00:00Z"})
    garbage = _case(hooks.API_KEYS_PATH, {"name": "k", "expires_at": "yesterday"})
    for case in (past, garbage):
        hooks.before_call(None, case, {})
    assert past.body["expires_at"] == hooks.FAR_FUTURE
    assert garbage.body["expires_at"] == "yesterday"


def test_results_become_one_finding_per_catalogue_item(tmp_path: Path) -> None:
    from conformance.fuzz.findings import catalogue_entries, load_findings
    from conformance.model import Status

    results = {
        "seed": 1,
        "max_examples_per_operation": 5,
        "checks": [
            {
                "check": "not_a_server_error",
                "item_id": item_id("not_a_server_error"),
                "status": "failed",
                "checked": 10,
                "failed": 1,
                "failures": [
                    {
                        "operation": "POST /api/v1/jobs",
                        "code": "ST101",
                        "title": "Server error",
                        "count": 1,
                        "examples": [{"curl": "curl -X POST http://h", "status_code": 500}],
                    }
                ],
            },
            {
                "check": "ignored_auth",
                "item_id": item_id("ignored_auth"),
                "status": "passed",
                "checked": 10,
                "failed": 0,
                "failures": [],
            },
        ],
    }
    path = tmp_path / "fuzz-results.json"
    path.write_text(json.dumps(results), encoding="utf-8")
    crash, auth = load_findings(path)
    assert (crash.item_id, crash.status) == ("API-FUZZ-NOT-A-SERVER-ERROR", Status.FAILED)
    assert crash.evidence[0].curl == "curl -X POST http://h"
    assert crash.evidence[0].status_code == 500
    assert auth.status is Status.PASSED
    ids = {entry.id for entry in catalogue_entries()}
    assert ids == {item_id(check) for check in CHECKS}
