"""Each flaw class of an independent implementation shows as the right `failed` item.

`flawed_app` is a small implementation of the contract written apart from the reference server;
one switch per flaw. With the switch on, the matching item must be `failed` (not error, not
passed); with every switch off the same checks pass, so the failure is the flaw's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from flawed_app import KNOWN_FLAWS
from flawed_support import FlawedServer, serve_flawed
from live_support import explain, run_checks, statuses

from conformance.checks.live.tenancy import MEMBER_ITEM, READ_ITEMS, WRITE_ITEMS
from conformance.model import Status

FlawedFactory = Callable[..., contextlib.AbstractContextManager[FlawedServer]]

#: flaw switch -> (the checks to run, the items that must fail)
CLASSES: dict[str, tuple[tuple[str, ...], set[str]]] = {
    "no-token-accepted": (("auth.auth_battery",), {"LIVE-AUTH-NO-TOKEN"}),
    "garbage-accepted": (("auth.auth_battery",), {"LIVE-AUTH-GARBAGE"}),
    "alg-none": (("auth.auth_battery",), {"LIVE-AUTH-ALG-NONE"}),
    # An empty signature accepted is alg none accepted too.
    "sig-stripped": (("auth.auth_battery",), {"LIVE-AUTH-SIG-STRIPPED", "LIVE-AUTH-ALG-NONE"}),
    "claims-tampered": (("auth.auth_battery",), {"LIVE-AUTH-CLAIMS-TAMPERED"}),
    # No signature check: tampered claims and expired tokens pass as well.
    "wrong-key": (("auth.auth_battery",), {
        "LIVE-AUTH-WRONG-KEY", "LIVE-AUTH-CLAIMS-TAMPERED", "LIVE-AUTH-EXPIRED",
    }),
    "alg-any-hs": (("auth.auth_battery",), {"LIVE-AUTH-ALG-PINNED"}),
    "expired-accepted": (("auth.auth_battery",), {"LIVE-AUTH-EXPIRED"}),
    "refresh-as-access": (("auth.auth_battery",), {"LIVE-AUTH-REFRESH-AS-ACCESS"}),
    "traceback": (("hygiene.error_hygiene",), {"LIVE-ERROR-MALFORMED-JSON"}),
    "no-media-type": (("hygiene.error_hygiene",), {"LIVE-ERROR-MEDIA-TYPE"}),
    "no-body-limit": (("hygiene.error_hygiene",), {"LIVE-ERROR-OVERSIZED"}),
    "html-404": (("hygiene.exposure",), {"LIVE-ERROR-NOT-FOUND"}),
    "version-banner": (("hygiene.exposure",), {"LIVE-BANNER-VERSION"}),
    "cross-tenant-read": (("tenancy.tenant_isolation",), {
        "LIVE-TENANT-JOB-READ", "LIVE-TENANT-QUEUE-READ", "LIVE-TENANT-LIST",
    }),
    "cross-tenant-write": (("tenancy.tenant_isolation",), {
        "LIVE-TENANT-JOB-WRITE", "LIVE-TENANT-QUEUE-WRITE", "LIVE-TENANT-KEY-WRITE",
    }),
    "cross-tenant-lease": (("tenancy.tenant_isolation",), {"LIVE-TENANT-LEASE"}),
    "cross-tenant-list": (("tenancy.tenant_isolation",), {"LIVE-TENANT-LIST"}),
    "member-writes": (("tenancy.tenant_isolation",), {"LIVE-PERM-MEMBER"}),
    "metrics-public": (("metrics.public_metrics",), {
        "LIVE-METRICS-PUBLIC", "LIVE-METRICS-TENANT-DATA",
    }),
    "lockout-race": (("resilience.login_lockout",), {"LIVE-LOGIN-LOCKOUT"}),
    "dates-unbounded": (("resilience.date_range",), {"LIVE-DATE-RANGE"}),
    "values-unbounded": (("resilience.value_range",), {"LIVE-VALUE-RANGE"}),
    "request-id-not-echoed": (("hygiene.request_id",), {"LIVE-REQUEST-ID"}),
    "weak-headers": (("headers.security_headers",), {
        "LIVE-HEADER-HSTS", "LIVE-HEADER-CSP", "LIVE-HEADER-NOSNIFF", "LIVE-HEADER-FRAME",
        "LIVE-HEADER-REFERRER",
    }),
}


@pytest.fixture(scope="module")
def flawed(
    tls_files: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> FlawedFactory:
    directory = tmp_path_factory.mktemp("flawed")

    def factory(*flaws: str, **options: Any) -> contextlib.AbstractContextManager[FlawedServer]:
        return serve_flawed(tls_files, flaws, directory=directory, **options)

    return factory


@pytest.fixture(scope="module")
def sound(flawed: FlawedFactory) -> Iterator[FlawedServer]:
    """The same implementation with every switch off."""
    with flawed() as server:
        yield server


@pytest.mark.parametrize("flaw", sorted(CLASSES))
def test_the_flaw_fails_its_item(flawed: FlawedFactory, flaw: str) -> None:
    checks, failing = CLASSES[flaw]
    with flawed(flaw) as server:
        findings = run_checks(server.context(), *checks)
    result = statuses(findings)
    assert {i for i, s in result.items() if s is Status.FAILED} == failing, explain(findings)
    assert Status.ERROR not in result.values(), explain(findings)


@pytest.mark.parametrize("checks", sorted({c for c, _ in CLASSES.values()}), ids="+".join)
def test_without_flaws_the_same_items_pass(sound: FlawedServer, checks: tuple[str, ...]) -> None:
    findings = run_checks(sound.context(), *checks)
    result = statuses(findings)
    assert set(result.values()) == {Status.PASSED}, explain(findings)


def test_without_writes_only_reads_are_tried_on_what_a_already_has(flawed: FlawedFactory) -> None:
    """A given second identity and no --allow-writes: B reads A's existing objects, no more."""
    with flawed("cross-tenant-read", "cross-tenant-write") as server:
        target = server.target
        with httpx.Client(base_url=target.base_url, verify=target.verify) as client:
            token = client.post("/api/v1/auth/login", json={
                "email": target.admin_email, "password": target.admin_password,
            }).json()["data"]["access_token"]
            a = {"Authorization": f"Bearer {token}"}
            assert client.post("/api/v1/queues", headers=a, json={"name": "a-only"}).is_success
            job = client.post("/api/v1/jobs", headers=a, json={
                "queue_name": "a-only", "job_type": "report", "payload": {}}).json()["data"]
            ctx = server.context()
            ctx.allow_writes = False
            findings = run_checks(ctx, "tenancy.tenant_isolation")
            after = client.get(f"/api/v1/jobs/{job['id']}", headers=a).json()["data"]
    result = statuses(findings)
    assert {i for i, s in result.items() if s is Status.FAILED} == set(READ_ITEMS), \
        explain(findings)
    assert {i for i, s in result.items() if s is Status.NOT_APPLICABLE} == {
        *WRITE_ITEMS, MEMBER_ITEM}, explain(findings)
    assert after["status"] == "pending"  # nothing was tried that could have changed it


@pytest.mark.parametrize(("backpressure", "status"), [(8, Status.FAILED), (64, Status.PASSED)])
def test_silent_connections_up_to_the_limit_stop_health(
    flawed: FlawedFactory, backpressure: int, status: Status
) -> None:
    """Granian holds a slot per connection: 9 silent ones stop a server of 8, not one of 64."""
    with flawed(backpressure=backpressure) as server:
        findings = run_checks(server.context(allow_load=True, slow_client_count=9),
                              "resilience.slow_clients")
    assert [f.status for f in findings] == [status], explain(findings)


def test_the_slow_client_probe_needs_its_opt_in(sound: FlawedServer) -> None:
    findings = run_checks(sound.context(slow_client_count=9), "resilience.slow_clients")
    assert [f.status for f in findings] == [Status.NOT_APPLICABLE], explain(findings)
    assert "--allow-load" in findings[0].message


def test_a_run_against_every_flaw_lists_each_as_failed_in_readiness_md(
    flawed: FlawedFactory, tmp_path: Path
) -> None:
    """`python -m conformance run` as a user would point it at the flawed implementation."""
    expected = set().union(*(items for _, items in CLASSES.values()), {"LIVE-SLOW-CLIENTS"})
    with flawed(*KNOWN_FLAWS, backpressure=24) as server:
        target = server.target
        assert target.ca_bundle is not None and target.admin_email and target.admin_password
        run = subprocess.run(
            [sys.executable, "-m", "conformance", "run", "--stack", "external",
             "--target-url", target.base_url, "--ca-bundle", str(target.ca_bundle),
             "--email", target.admin_email, "--password", target.admin_password,
             "--second-email", server.second_email, "--second-password", target.admin_password,
             "--jwt-secret", server.jwt_secret, "--allow-writes", "--allow-load",
             "--slow-client-count", "25", "--reports-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=300, check=False,
        )
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "latest" / "results.json").read_text())
    status = {item["id"]: item["status"] for item in results["items"]}
    assert {i for i in expected if status[i] != "failed"} == set(), run.stdout[-3000:]
    assert not {i for i, s in status.items() if i.startswith("LIVE-") and s == "error"}
    readiness = (tmp_path / "latest" / "readiness.md").read_text()
    # Blockers read "**ID** `failed`", the other findings "`failed` **ID**".
    shown = {i for i in expected
             if f"**{i}** `failed`" in readiness or f"`failed` **{i}**" in readiness}
    assert shown == expected


def test_no_endpoint_accepting_the_credential_is_one_error_naming_what_was_tried(
    sound: FlawedServer,
) -> None:
    ctx = sound.context(token="not-a-credential-of-this-server", email=None, password=None)
    ctx.target = dataclasses.replace(sound.target, admin_email=None, admin_password=None)
    findings = run_checks(ctx, "auth.auth_battery")
    assert {f.status for f in findings} == {Status.ERROR}, explain(findings)
    assert len({f.message for f in findings}) == 1
    assert "GET /api/v1/auth/validate: 401" in findings[0].message
    assert "GET /api/v1/queues: 401" in findings[0].message


def _expired_token(server: FlawedServer, *, seconds_ago: int, key: str | None = None) -> str:
    now = int(time.time())
    claims = {"sub": "x", "org": "y", "perms": ["job:read"], "typ": "access",
              "iat": now - 7200, "exp": now - seconds_ago}
    return jwt.encode(claims, key or server.jwt_secret, algorithm="HS256")


FOREIGN_KEY = "a key this server never signed with, 32+ bytes long"


@pytest.mark.parametrize(("jwt_secret", "key", "status", "text"), [
    # Without the secret: the contract's AUTH_002 shows the server read it as its own, expired.
    (None, None, Status.PASSED, "401 AUTH_002"),
    # Without the secret, signed elsewhere: AUTH_001 may refuse the signature, not the expiry.
    (None, FOREIGN_KEY, Status.NOT_APPLICABLE, "signature could not be verified"),
    # With the secret: its signature is checked before it is sent.
    ("server", FOREIGN_KEY, Status.ERROR, "not signed with the server's JWT secret"),
    ("server", None, Status.PASSED, "signature verified"),
])
def test_a_given_expired_token_counts_only_as_the_servers_own(
    sound: FlawedServer, jwt_secret: str | None, key: str | None, status: Status, text: str,
) -> None:
    token = _expired_token(sound, seconds_ago=60, key=key)
    secret = sound.jwt_secret if jwt_secret else None
    findings = run_checks(sound.context(jwt_secret=secret, expired_token=token),
                          "auth.auth_battery")
    expired = next(f for f in findings if f.item_id == "LIVE-AUTH-EXPIRED")
    assert expired.status is status, explain(findings)
    assert text in expired.message, expired.message


def test_a_given_expired_token_is_judged_without_the_secret(flawed: FlawedFactory) -> None:
    with flawed("expired-accepted") as server:
        token = _expired_token(server, seconds_ago=60)
        findings = run_checks(server.context(jwt_secret=None, expired_token=token),
                              "auth.auth_battery")
    result = statuses(findings)
    assert result["LIVE-AUTH-EXPIRED"] is Status.FAILED, explain(findings)
    assert result["LIVE-AUTH-ALG-PINNED"] is Status.NOT_APPLICABLE, explain(findings)


def test_a_token_that_is_not_expired_is_no_expired_token(sound: FlawedServer) -> None:
    token = _expired_token(sound, seconds_ago=-3600)
    findings = run_checks(sound.context(jwt_secret=None, expired_token=token),
                          "auth.auth_battery")
    assert statuses(findings)["LIVE-AUTH-EXPIRED"] is Status.ERROR, explain(findings)


def test_a_wrong_jwt_secret_judges_nothing(sound: FlawedServer) -> None:
    """Its own control (a fresh token signed with it) fails: no wrong-key case passed as expiry."""
    findings = run_checks(sound.context(jwt_secret="not the server's secret at all, 32+ bytes"),
                          "auth.auth_battery")
    result = statuses(findings)
    assert result["LIVE-AUTH-EXPIRED"] is Status.ERROR, explain(findings)
    assert result["LIVE-AUTH-ALG-PINNED"] is Status.ERROR, explain(findings)
    assert "does not sign tokens this server accepts" in next(
        f.message for f in findings if f.item_id == "LIVE-AUTH-EXPIRED")


def test_a_second_token_serves_as_organisation_b(flawed: FlawedFactory) -> None:
    with flawed("cross-tenant-read") as server:
        with httpx.Client(base_url=server.target.base_url, verify=server.target.verify) as client:
            token = client.post("/api/v1/auth/login", json={
                "email": server.second_email, "password": server.target.admin_password,
            }).json()["data"]["access_token"]
        findings = run_checks(
            server.context(second_email=None, second_password=None, second_token=token),
            "tenancy.tenant_isolation")
    result = statuses(findings)
    assert {i for i, s in result.items() if s is Status.FAILED} == set(READ_ITEMS), \
        explain(findings)


def test_a_second_identity_in_the_same_organisation_judges_nothing(sound: FlawedServer) -> None:
    findings = run_checks(sound.context(second_email=sound.target.admin_email),
                          "tenancy.tenant_isolation")
    result = statuses(findings)
    assert {result[i] for i in (*READ_ITEMS, *WRITE_ITEMS)} == {Status.ERROR}, explain(findings)
    assert "the run's own organisation" in next(
        f.message for f in findings if f.item_id == "LIVE-TENANT-JOB-READ")


def test_a_credential_that_cannot_make_throwaway_objects_still_judges_the_reads(
    flawed: FlawedFactory,
) -> None:
    """Writes allowed, but A is a member key: no queue of its own, so B reads what A has."""
    with flawed("cross-tenant-read") as server:
        target = server.target
        with httpx.Client(base_url=target.base_url, verify=target.verify) as client:
            token = client.post("/api/v1/auth/login", json={
                "email": target.admin_email, "password": target.admin_password,
            }).json()["data"]["access_token"]
            admin = {"Authorization": f"Bearer {token}"}
            assert client.post("/api/v1/queues", headers=admin, json={"name": "a-only"}).is_success
            client.post("/api/v1/jobs", headers=admin, json={
                "queue_name": "a-only", "job_type": "report", "payload": {}})
            member = client.post("/api/v1/api-keys", headers=admin, json={
                "name": "member", "permissions": ["queue:read", "job:read", "job:write"],
            }).json()["data"]["key"]
        findings = run_checks(server.context(api_key=member), "tenancy.tenant_isolation")
    result = statuses(findings)
    assert {i for i, s in result.items() if s is Status.FAILED} == set(READ_ITEMS), \
        explain(findings)
    assert {result[i] for i in (*WRITE_ITEMS, MEMBER_ITEM)} == {Status.NOT_APPLICABLE}
    assert "could not be made" in next(f.message for f in findings if f.item_id == MEMBER_ITEM)


def test_bare_array_lists_are_no_missing_key(flawed: FlawedFactory) -> None:
    """The contract fixes no list wrapper: a bare array of A's keys still holds A's key (F1)."""
    with flawed(variants=("bare-lists",)) as server:
        findings = run_checks(server.context(), "tenancy.tenant_isolation")
    assert set(statuses(findings).values()) == {Status.PASSED}, explain(findings)


def test_a_bare_array_listing_a_queues_is_caught(flawed: FlawedFactory) -> None:
    """B's GET /queues lists A's queue, as a bare array (M1)."""
    with flawed("cross-tenant-list", variants=("bare-lists",)) as server:
        findings = run_checks(server.context(), "tenancy.tenant_isolation")
    result = statuses(findings)
    assert {i for i, s in result.items() if s is Status.FAILED} == {"LIVE-TENANT-LIST"}, \
        explain(findings)


def test_closed_registration_makes_the_tenant_items_unjudgeable_not_errors(
    flawed: FlawedFactory,
) -> None:
    """No second identity given and registration refused: not_applicable with the how-to (F2);
    the member item needs only organisation A and still runs."""
    with flawed(variants=("registration-closed",)) as server:
        findings = run_checks(server.context(second_email=None, second_password=None),
                              "tenancy.tenant_isolation")
    result = statuses(findings)
    assert {result[i] for i in (*READ_ITEMS, *WRITE_ITEMS)} == {Status.NOT_APPLICABLE}, \
        explain(findings)
    assert result[MEMBER_ITEM] is Status.PASSED, explain(findings)
    message = next(f.message for f in findings if f.item_id == "LIVE-TENANT-JOB-READ")
    assert "--second-token" in message and "403" in message


@pytest.mark.parametrize(("limit", "status", "text"), [
    ("600", Status.NOT_APPLICABLE, "cannot reach the limit within the probe's bound"),
    ("100", Status.FAILED, "X-RateLimit-Remaining reached 0 and no 429 followed"),
])
def test_an_advertised_limit_never_enforced_is_not_passed(
    flawed: FlawedFactory, limit: str, status: Status, text: str,
) -> None:
    """Headers counting down and no 429 (W1): above the probe's cap it cannot be judged."""
    with flawed("ratelimit-unenforced", env_extra={"FLAWED_RATE_LIMIT": limit}) as server:
        findings = run_checks(server.context(), "ratelimit.rate_limit")
    assert [f.status for f in findings] == [status], explain(findings)
    assert text in findings[0].message


def test_a_request_logged_under_the_servers_own_id_is_found_and_the_echo_named(
    flawed: FlawedFactory, tmp_path: Path,
) -> None:
    """No echo of X-Request-ID (M2): LIVE-REQUEST-ID fails; LIVE-LOGGING finds the request under
    the id the server returned and says that the echo is missing."""
    log = tmp_path / "app.log"
    with flawed("request-id-not-echoed", env_extra={"FLAWED_LOG_FILE": str(log)}) as server:
        findings = run_checks(server.context(log_file=log), "logs.log_lines", "hygiene.request_id")
    result = statuses(findings)
    assert result["LIVE-REQUEST-ID"] is Status.FAILED, explain(findings)
    assert result["LIVE-LOGGING"] is Status.PASSED, explain(findings)
    logging = next(f for f in findings if f.item_id == "LIVE-LOGGING")
    assert "did not echo our X-Request-ID" in logging.message


@pytest.mark.parametrize("status", [500, 503])
def test_an_error_on_the_public_metrics_path_is_no_refusal(
    flawed: FlawedFactory, status: int,
) -> None:
    """A 5xx shows neither a refusal nor the metrics: not_applicable with the cause, not passed."""
    with flawed(env_extra={"FLAWED_METRICS_STATUS": str(status)}) as server:
        findings = run_checks(server.context(), "metrics.public_metrics")
    assert statuses(findings) == {"LIVE-METRICS-PUBLIC": Status.NOT_APPLICABLE,
                                  "LIVE-METRICS-TENANT-DATA": Status.NOT_APPLICABLE}, \
        explain(findings)
    assert f"answered {status}" in findings[0].message


def _admin_and_key(server: FlawedServer, permissions: list[str]) -> str:
    """An API key of organisation A with the given permissions, made by A's admin."""
    target = server.target
    with httpx.Client(base_url=target.base_url, verify=target.verify) as client:
        token = client.post("/api/v1/auth/login", json={
            "email": target.admin_email, "password": target.admin_password,
        }).json()["data"]["access_token"]
        made = client.post("/api/v1/api-keys", headers={"Authorization": f"Bearer {token}"},
                           json={"name": "given", "permissions": permissions})
    assert made.status_code == 201, made.text
    return str(made.json()["data"]["key"])


@pytest.mark.parametrize("given", [{"second_token": "not-a-token-of-this-server"},
                                   {"second_api_key": "tf_no_such_key_on_this_server"}])
def test_a_second_credential_that_does_not_work_is_said_once(
    sound: FlawedServer, given: dict[str, str],
) -> None:
    """B's refusals prove nothing when B's own credential is refused: one error for B's items,
    naming the option; the member item needs only A and still runs."""
    findings = run_checks(sound.context(second_email=None, second_password=None, **given),
                          "tenancy.tenant_isolation")
    result = statuses(findings)
    assert {result[i] for i in (*READ_ITEMS, *WRITE_ITEMS)} == {Status.ERROR}, explain(findings)
    messages = {f.message for f in findings if f.item_id in (*READ_ITEMS, *WRITE_ITEMS)}
    assert len(messages) == 1, messages
    option = "--" + next(iter(given)).replace("_", "-")
    assert f"the second identity ({option}) was not accepted" in messages.pop()
    assert result[MEMBER_ITEM] is Status.PASSED, explain(findings)


MEMBER = ["queue:read", "job:read", "job:write"]


@pytest.mark.parametrize(("flaws", "status"), [((), Status.PASSED),
                                                (("member-writes",), Status.FAILED)])
def test_a_given_member_key_is_the_member_judged(
    flawed: FlawedFactory, flaws: tuple[str, ...], status: Status,
) -> None:
    with flawed(*flaws) as server:
        key = _admin_and_key(server, MEMBER)
        findings = run_checks(server.context(member_api_key=key), "tenancy.tenant_isolation")
    member = next(f for f in findings if f.item_id == MEMBER_ITEM)
    assert member.status is status, explain(findings)
    assert "--member-api-key" in member.message


@pytest.mark.parametrize(("given", "text"), [
    ("admin", "is no member"),
    ("unknown token", "was not accepted (401)"),
])
def test_a_given_member_that_is_none_judges_nothing(
    sound: FlawedServer, given: str, text: str,
) -> None:
    if given == "admin":
        ctx = sound.context(member_api_key=_admin_and_key(sound, ["queue:read", "queue:write"]))
    else:
        ctx = sound.context(member_token="not-a-token-of-this-server")
    findings = run_checks(ctx, "tenancy.tenant_isolation")
    member = next(f for f in findings if f.item_id == MEMBER_ITEM)
    assert member.status is Status.ERROR, explain(findings)
    assert text in member.message


def test_a_refused_login_behind_a_401_metrics_path_is_a_finding_not_a_crash(
    flawed: FlawedFactory,
) -> None:
    """The metrics path answers 401 and the run's password is wrong: the smoke item and the
    metrics items each say so as a finding; none crashes with the login's error."""
    with flawed(env_extra={"FLAWED_METRICS_STATUS": "401"}) as server:
        findings = run_checks(server.context(password="not-the-password-1"),
                              "jobs.smoke", "metrics.metrics")
    result = statuses(findings)
    assert result["LIVE-SMOKE-JOB"] is Status.ERROR, explain(findings)
    assert "login refused with HTTP 401" in next(
        f.message for f in findings if f.item_id == "LIVE-SMOKE-JOB")
    # The public refusal is judged as such, the refused login aside (issue 16, point 5).
    assert result["LIVE-METRICS"] is Status.PASSED, explain(findings)
