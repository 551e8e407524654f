"""The pure parts of the live checks: redaction, header rules, metric names, tokens, log lines."""

from __future__ import annotations

import json
import shlex
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import jwt
import pytest
from live_support import run_checks, statuses

from conformance.checks.live.auth import (
    claims_of,
    resigned_payload,
    secret_problem,
    unsigned_token,
    verifies_with,
)
from conformance.checks.live.common import Report
from conformance.checks.live.headers import csp_problem, frame_problem, hsts_problem
from conformance.checks.live.http import LiveClient, curl_for, redact_body, retry_after_seconds
from conformance.checks.live.hygiene import leaks
from conformance.checks.live.logs import missing_fields, parse_line
from conformance.checks.live.metrics import CONTRACT_METRICS, exposed_names, tenant_values
from conformance.checks.live.tenancy import Objects, Probe
from conformance.checks.registry import CheckContext
from conformance.model import Status
from conformance.stack import Target


def test_curl_redacts_credentials_and_secret_fields() -> None:
    request = httpx.Request(
        "POST", "https://api.example.test/api/v1/auth/login",
        headers={"Authorization": "Bearer eyJ.secret.sig", "X-API-Key": "tf_abc",
                 "Content-Type": "application/json"},
        json={"email": "a@example.test", "password": "hunter22", "refresh_token": "r.t.s"},
    )
    command = curl_for(request, cacert=Path("/tmp/ca.pem"))
    for secret in ("eyJ.secret.sig", "tf_abc", "hunter22", "r.t.s"):
        assert secret not in command
    argv = shlex.split(command)
    assert argv[:5] == ["curl", "-sS", "-i", "--cacert", "/tmp/ca.pem"]
    assert "Authorization: Bearer <redacted>" in argv
    assert json.loads(argv[argv.index("--data-raw") + 1])["email"] == "a@example.test"


def test_non_json_bodies_are_redacted_too() -> None:
    text = redact_body(b"password=hunter22&x=1 Authorization: Bearer abc.def")
    assert "hunter22" not in text and "abc.def" not in text


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after_seconds("52") == 52
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 0 < (retry_after_seconds(later) or 0) <= 30
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


@pytest.mark.parametrize(
    ("value", "ok"),
    [("max-age=31536000; includeSubDomains", True), ("max-age=63072000", True),
     ("max-age=15768000", False), ("max-age=86400", False), ("includeSubDomains", False),
     (None, False)],
)
def test_hsts_needs_a_year(value: str | None, ok: bool) -> None:
    assert (hsts_problem(value) is None) is ok


def test_the_guides_csp_is_refused() -> None:
    guide = "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval';"
    assert "unsafe-inline" in (csp_problem(guide) or "")
    assert csp_problem("default-src 'self'; frame-ancestors 'none'") is None


def test_framing_is_denied_by_either_header() -> None:
    assert frame_problem("DENY", None) is None
    assert frame_problem(None, "default-src 'self'; frame-ancestors 'none'") is None
    assert frame_problem("SAMEORIGIN", "default-src 'self'") is not None


def test_metric_names_include_counter_suffixes_and_empty_families() -> None:
    text = (
        "# HELP taskforge_job_submitted_total Jobs submitted.\n"
        "# TYPE taskforge_job_submitted_total counter\n"
        "# HELP taskforge_redis_up Redis reachable.\n"
        "# TYPE taskforge_redis_up gauge\n"
        "taskforge_redis_up 1.0\n"
    )
    names = exposed_names(text)
    assert {"taskforge_job_submitted_total", "taskforge_redis_up"} <= names
    assert "taskforge_queue_length" in CONTRACT_METRICS and "taskforge_queue_length" not in names


def test_forged_tokens() -> None:
    token = unsigned_token({"sub": "x"})
    assert jwt.get_unverified_header(token)["alg"] == "none"
    assert token.endswith(".")
    signed = jwt.encode({"sub": "x"}, "your-256-bit-secret", algorithm="HS256")
    assert verifies_with(signed, "your-256-bit-secret")
    assert not verifies_with(signed, "another key of some length 0123456789")


@pytest.mark.parametrize(
    ("secret", "problem"),
    [("your_super_secret_jwt_key_here_must_be_at_least_32_chars_long", "well-known"),
     ("short", "under 32"), ("a" * 40, "distinct"), ("k3Jx9-Vq2Lm8Zr0Tw5Yb7Nc4Hd6Pf1Sg", None)],
)
def test_secret_strength(secret: str, problem: str | None) -> None:
    found = secret_problem("JWT_SECRET", secret)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_log_lines_need_fields_and_request_ids_on_requests() -> None:
    base = {"timestamp": "t", "level": "info", "message": "m"}
    assert missing_fields(base) == []
    assert missing_fields({**base, "method": "GET"}) == ["request_id"]
    assert missing_fields({"level": "info"}) == ["timestamp", "message"]
    assert parse_line('app-1  | {"a": 1}') == {"a": 1}
    assert parse_line("2026-11-28 INFO started") is None


def test_a_leaked_secret_in_the_log_command_output_fails(tmp_path: Path) -> None:
    """--log-command output is searched for the run's credentials; nothing is contacted."""
    log = tmp_path / "app.log"
    line = {"timestamp": "2026-11-28T20:00:00Z", "level": "info", "message": "login",
            "request_id": "r1", "method": "POST", "path": "/api/v1/auth/login",
            "body": "password=correct horse battery staple"}
    log.write_text(json.dumps(line) + "\n")
    target = Target(base_url="https://127.0.0.1:9", provider="external", is_reference=False)
    ctx = CheckContext(
        target=target, log_command=shlex.join([sys.executable, "-c",
                                               f"print(open({str(log)!r}).read())"]),
        email="a@example.test", password="correct horse battery staple",
    )
    result = statuses(run_checks(ctx, "logs.log_lines"))
    assert result == {
        # the marker request could not be sent: port 9 is closed, so the target cannot be judged
        # over HTTP (blocked by reachability, never "failed"); the log lines still are
        "LIVE-LOGGING": Status.BLOCKED,
        "LIVE-LOG-JSON": Status.PASSED,
        "LIVE-LOG-NO-SECRETS": Status.FAILED,
        "LIVE-LOG-ERRORS": Status.PASSED,
    }


def test_no_log_source_is_not_applicable() -> None:
    target = Target(base_url="https://127.0.0.1:9", provider="external", is_reference=False)
    findings = run_checks(CheckContext(target=target), "logs.log_lines")
    assert {f.status for f in findings} == {Status.NOT_APPLICABLE}


@pytest.mark.parametrize(
    "body",
    [
        'Traceback (most recent call last):\n  File "/srv/app/api.py", line 12, in submit',
        '{"error": {"code": "INTERNAL_ERROR", "message": "JSONDecodeError: Expecting value"}}',
        '{"detail": "see /usr/lib/python3/dist-packages/app/views.py"}',
        "thread 'main' panicked at src/main.rs:3:5",
    ],
)
def test_internals_in_an_error_body_are_found(body: str) -> None:
    assert leaks(body)


def test_a_plain_error_envelope_shows_no_internals() -> None:
    body = ('{"success": false, "error": {"code": "VALIDATION_001", "message": "malformed JSON '
            'body", "details": [{"field": "body", "message": "Expecting value at line 1"}]}}')
    assert leaks(body) == []


def test_a_token_with_a_tampered_payload_keeps_its_header_and_signature() -> None:
    token = jwt.encode({"sub": "a", "org": "x"}, "k" * 32, algorithm="HS256")
    forged = resigned_payload(token, {"sub": "a", "org": "y"})
    assert forged.split(".")[0] == token.split(".")[0]
    assert forged.split(".")[2] == token.split(".")[2]
    assert claims_of(forged) == {"sub": "a", "org": "y"}
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, "k" * 32, algorithms=["HS256"])


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_tokens_carry_the_spelling_asked_for(alg: str) -> None:
    token = unsigned_token({"sub": "x"}, alg)
    assert jwt.get_unverified_header(token)["alg"] == alg
    assert token.endswith(".")


def test_tenant_labels_are_found_and_shared_values_are_not() -> None:
    text = (
        "# TYPE taskforge_queue_length gauge\n"
        'taskforge_queue_length{queue="default",status="pending"} 1\n'
        'taskforge_queue_length{queue="acme-payroll",status="pending"} 2\n'
        'taskforge_queue_length{queue="other",status="pending"} 3\n'
    )
    assert tenant_values(text) == {"queue=acme-payroll"}
    assert tenant_values(text.replace("acme-payroll", "default")) == set()


def test_silent_sockets_go_where_resolve_sends_the_name() -> None:
    from conformance.checks.live.resilience import _address

    target = Target(base_url="https://api.example.test:8443", provider="external",
                    is_reference=False, resolve=("api.example.test:8443:127.0.0.2",))
    assert _address(CheckContext(target=target)) == ("127.0.0.2", 8443)
    plain = Target(base_url="https://api.example.test", provider="external", is_reference=False)
    assert _address(CheckContext(target=plain)) == ("api.example.test", 443)


@pytest.mark.parametrize("item", ["LIVE-LOG-NO-SECRETS", "LIVE-LOGIN-LOCKOUT"])
def test_security_musts_of_the_guide_gate_the_verdict(item: str) -> None:
    """Credentials in the logs and no login lockout (guide 6.1, security checklist) are blockers:
    a `failed` must make the verdict NOT READY, not pass as a major finding (eval W2)."""
    from conformance.catalogue import load_catalogue
    from conformance.model import Severity

    entry = load_catalogue()[item]
    assert entry.severity is Severity.BLOCKER


def _tenancy_probe() -> tuple[Probe, LiveClient]:
    target = Target(base_url="https://api.example.test", provider="external", is_reference=False)
    client = LiveClient(target, insecure=True)  # only writes evidence: no request is sent
    objects = Objects(queue="a-queue", job_id="0190aaaa-job-of-a", marker="marker-of-a")
    return Probe(Report("units"), client, {"X-API-Key": "b"}, objects), client


def _answer(status: int, body: object) -> httpx.Response:
    request = httpx.Request("GET", "https://api.example.test/api/v1/jobs?queue_name=a-queue")
    return httpx.Response(status, json=body, request=request)


@pytest.mark.parametrize(("status", "body", "verdict", "text"), [
    (200, {"success": True, "data": {"jobs": []}}, Status.PASSED, "1 attempt(s)"),
    (404, {"success": False, "error": {"code": "RESOURCE_NOT_FOUND"}}, Status.PASSED, "1 attempt"),
    (403, {"success": False, "error": {"code": "PERM_001"}}, Status.PASSED, "1 attempt"),
    (200, {"success": True, "data": {"jobs": [{"id": "0190aaaa-job-of-a"}]}}, Status.FAILED,
     "shows organisation A's data"),
    # B's credential refused: nothing was judged.
    (401, {"success": False, "error": {"code": "AUTH_001"}}, Status.ERROR, "credential"),
    (429, {"success": False, "error": {"code": "RATE_LIMIT_EXCEEDED"}}, Status.ERROR, "429"),
    # A server error is a failure to investigate, not a pass.
    (500, {"success": False, "error": {"code": "INTERNAL_ERROR"}}, Status.FAILED,
     "the server failed"),
    (400, {"success": False, "error": {"code": "VALIDATION_001"}}, Status.NOT_APPLICABLE,
     "no answer showed"),
])
def test_a_list_probe_passes_only_on_an_answer_showing_isolation(
    status: int, body: object, verdict: Status, text: str,
) -> None:
    probe, client = _tenancy_probe()
    with client:
        probe.expect_empty_of_a("LIVE-TENANT-LIST", "B: GET /jobs filtered by A's queue name",
                                _answer(status, body))
        [finding] = probe.findings(("LIVE-TENANT-LIST",))
    assert finding.status is verdict, finding.message
    assert text in finding.message


@pytest.mark.parametrize(("status", "verdict"), [
    (404, Status.PASSED), (403, Status.PASSED), (200, Status.FAILED), (401, Status.ERROR),
    (502, Status.FAILED),
])
def test_a_refusal_probe_passes_only_on_a_refusal(status: int, verdict: Status) -> None:
    probe, client = _tenancy_probe()
    with client:
        probe.expect_refused("LIVE-TENANT-JOB-READ", "B: GET A's job",
                             _answer(status, {"success": status < 300}))
        [finding] = probe.findings(("LIVE-TENANT-JOB-READ",))
    assert finding.status is verdict, finding.message
