"""Abuse a deployment must shrug off: silent connections, a racing password burst, absurd dates.

Each probe is bounded in count and time, and runs only where it may: the slow-client probe on
the reference stack or with --allow-load; the lockout burst and the out-of-range date (both
write) on the reference stack or with --allow-writes.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from conformance.checks.live.common import (
    Report,
    known_setting,
    may_load,
    may_write,
    target_of,
)
from conformance.checks.live.http import (
    auth_headers,
    client_for,
    credential_or_findings,
    error_code_of,
    payload_of,
    ssl_context,
)
from conformance.checks.registry import check

if TYPE_CHECKING:
    from conformance.checks.registry import CheckContext
    from conformance.model import Finding

#: More silent sockets than this are never opened, whatever the target publishes.
MAX_SLOW_CLIENTS = 2000
SLOW_CONNECT_SECONDS = 2.0
SLOW_PROBE_BUDGET_SECONDS = 30.0
#: The answer /health owes a new client while the silent ones hold their sockets.
HEALTH_WITHIN_SECONDS = 2.0
#: How long the silent sockets sit before the question: long enough to be accepted.
SETTLE_SECONDS = 0.5
#: The contract: 5 failed attempts per 15 minutes per email lock further attempts.
LOCKOUT_ATTEMPTS = 5
BURST = 20
OUT_OF_RANGE = "0001-01-01T00:00:00+01:00"


def _slow_count(ctx: CheckContext) -> tuple[int, str] | None:
    if ctx.slow_client_count:
        return int(ctx.slow_client_count), "--slow-client-count"
    published = known_setting(ctx, "MAX_CONNECTIONS")
    if published and published.strip().isdigit():
        return int(published) + 1, f"MAX_CONNECTIONS {published} + 1"
    if ctx.target is not None and ctx.target.is_reference:
        return 101, "the contract's default MAX_CONNECTIONS 100 + 1"
    return None


def _address(ctx: CheckContext) -> tuple[str, int]:
    """Where the target's sockets go: its host and port, or the --resolve address for them."""
    target = target_of(ctx)  # with the run's --resolve entries added to the target's own
    url = urlsplit(target.base_url)
    host, port = url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)
    return target.resolve_map.get((host, port), host).strip("[]"), port


# Last: while the silent sockets are open, other checks would be starved too.
@check("LIVE-SLOW-CLIENTS", needs=("target",), last=True)
def slow_clients(ctx: CheckContext) -> Iterator[Finding]:
    """With MAX_CONNECTIONS + 1 silent connections open, /health still answers within 2 s."""
    report = Report(f"{__name__}.slow_clients")
    if not may_load(ctx):
        yield report.not_applicable(
            "LIVE-SLOW-CLIENTS", "opens many connections at once: give --allow-load (and "
            "--slow-client-count or an --env-file with MAX_CONNECTIONS)")
        return
    wanted = _slow_count(ctx)
    if wanted is None:
        yield report.not_applicable(
            "LIVE-SLOW-CLIENTS", "the target's MAX_CONNECTIONS is unknown: give "
            "--slow-client-count or an --env-file with MAX_CONNECTIONS")
        return
    count, why = min(wanted[0], MAX_SLOW_CLIENTS), wanted[1]
    host, port = _address(ctx)
    target = target_of(ctx)
    server_name = urlsplit(target.base_url).hostname or host
    tls: ssl.SSLContext | None = None
    if target.base_url.startswith("https"):
        tls = ssl_context(target)
        if ctx.insecure:
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
    sockets: list[socket.socket] = []
    deadline = time.monotonic() + SLOW_PROBE_BUDGET_SECONDS
    try:
        while len(sockets) < count and time.monotonic() < deadline:
            try:
                raw = socket.create_connection((host, port), SLOW_CONNECT_SECONDS)
            except OSError:
                break  # refused or out of descriptors: judge with what is open
            try:
                # Silent at the HTTP layer: over TLS the handshake completes, then nothing.
                sockets.append(tls.wrap_socket(raw, server_hostname=server_name) if tls else raw)
            except OSError:
                raw.close()
                break  # the server stopped taking handshakes: it is full already
        time.sleep(SETTLE_SECONDS)
        with client_for(ctx, timeout=HEALTH_WITHIN_SECONDS) as client:
            started = time.monotonic()
            try:
                response = client.http.get("/health")
                elapsed = time.monotonic() - started
                outcome, evidence = f"{response.status_code} in {elapsed:.2f}s", \
                    client.evidence(response, f"GET /health beside {len(sockets)} silent sockets")
                answered = response.status_code == 200 and elapsed <= HEALTH_WITHIN_SECONDS
            except Exception as exc:  # a timeout is the finding, not a crash
                outcome = f"no answer within {HEALTH_WITHIN_SECONDS:.0f}s ({type(exc).__name__})"
                evidence, answered = None, False
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
    shown = (evidence,) if evidence is not None else ()
    if len(sockets) < count and answered:
        yield report.passed(
            "LIVE-SLOW-CLIENTS", f"the target took only {len(sockets)} of {count} silent "
            f"connections ({why}) and /health answered {outcome}", *shown)
    elif answered:
        yield report.passed(
            "LIVE-SLOW-CLIENTS", f"{count} silent connections ({why}) open, /health: {outcome}",
            *shown)
    else:
        yield report.failed(
            "LIVE-SLOW-CLIENTS", f"with {len(sockets)} silent connections open ({why}), "
            f"/health: {outcome}", *shown,
            expected=f"200 within {HEALTH_WITHIN_SECONDS:.0f}s", actual=outcome)


@check("LIVE-LOGIN-LOCKOUT", needs=("target",))
def login_lockout(ctx: CheckContext) -> Iterator[Finding]:
    """A concurrent burst of wrong passwords: at most 5 evaluated, then the account is locked."""
    report = Report(f"{__name__}.login_lockout")
    if not may_write(ctx):
        yield report.not_applicable(
            "LIVE-LOGIN-LOCKOUT", "registers a throwaway account to lock: give --allow-writes")
        return
    email = f"lockout-{secrets.token_hex(4)}@conformance.example.com"
    password = secrets.token_urlsafe(18)
    with client_for(ctx) as client:
        registered = client.post("/api/v1/auth/register", json={
            "email": email, "password": password,
            "organization_name": f"conformance lockout {secrets.token_hex(4)}",
        })
        if registered.status_code not in (200, 201):
            yield report.not_applicable(
                "LIVE-LOGIN-LOCKOUT", f"registration is closed ({registered.status_code}): the "
                "kit locks only an account of its own")
            return

        # The burst has a client of its own, closed before anything else is asked: its kept-alive
        # connections would otherwise hold the server's connection slots.
        with client_for(ctx) as burst:

            def guess(number: int) -> int | str:
                wrong = {"email": email, "password": f"wrong-{number}-{secrets.token_hex(4)}"}
                try:
                    return burst.post("/api/v1/auth/login", json=wrong,
                                      retry_429=False).status_code
                except httpx.TransportError as exc:
                    return type(exc).__name__

            with ThreadPoolExecutor(max_workers=BURST) as pool:
                answers: Counter[int | str] = Counter(pool.map(guess, range(BURST)))
        right = client.post("/api/v1/auth/login", json={"email": email, "password": password},
                            retry_429=False)
        evidence = client.evidence(right, "the right password, after the burst")
    evaluated = answers.get(401, 0)
    summary = ", ".join(f"{n} x {status}" for status, n in sorted(answers.items(), key=str))
    problems = []
    if evaluated > LOCKOUT_ATTEMPTS:
        problems.append(f"{evaluated} of {BURST} concurrent wrong passwords were evaluated "
                        f"(401), more than {LOCKOUT_ATTEMPTS}")
    if right.status_code == 200:
        problems.append("the right password was then accepted: the account was not locked")
    unexpected = {s for s in answers if s not in (401, 429)}
    if problems:
        yield report.failed(
            "LIVE-LOGIN-LOCKOUT", "; ".join(problems) + f" (burst: {summary})", evidence,
            expected=f"at most {LOCKOUT_ATTEMPTS} evaluated, then 429",
            actual=f"{summary}; right password {right.status_code}")
    elif unexpected or right.status_code != 429:
        yield report.error(
            "LIVE-LOGIN-LOCKOUT", f"the burst got {summary} and the right password "
            f"{right.status_code}: neither a lockout nor its absence", evidence)
    else:
        yield report.passed(
            "LIVE-LOGIN-LOCKOUT", f"{BURST} concurrent wrong passwords: {summary}; the right "
            f"one then got 429 {error_code_of(right) or ''}".strip(), evidence)


@check("LIVE-DATE-RANGE", needs=("target",))
def date_range(ctx: CheckContext) -> Iterator[Finding]:
    """scheduled_for outside years 1-9999 once in UTC is refused with 400, single and batch."""
    report = Report(f"{__name__}.date_range")
    if not may_write(ctx):
        yield report.not_applicable(
            "LIVE-DATE-RANGE", "a server that accepts the date stores a job: give --allow-writes")
        return
    job = {"queue_name": "default", "job_type": "conformance_date_range", "payload": {},
           "scheduled_for": OUT_OF_RANGE}
    with client_for(ctx) as client:
        headers = yield from credential_or_findings(
            report, ["LIVE-DATE-RANGE"], "no credential: give --token, --api-key or "
            "--email/--password", lambda: auth_headers(ctx, client),
        )
        if headers is None:
            return
        single = client.post("/api/v1/jobs", json=job, headers=headers)
        batch = client.post("/api/v1/jobs/batch", json={"jobs": [job]}, headers=headers)
        evidence = [client.evidence(single, f"POST /api/v1/jobs, scheduled_for {OUT_OF_RANGE}"),
                    client.evidence(batch, "POST /api/v1/jobs/batch, the same job")]
        # Whatever a broken server stored is cancelled again.
        stored = payload_of(single)
        if single.status_code in (200, 201) and isinstance(stored, dict) and stored.get("id"):
            client.post(f"/api/v1/jobs/{stored['id']}/cancel", headers=headers)
        ids = payload_of(batch)
        if batch.status_code in (200, 201) and isinstance(ids, dict):
            for job_id in ids.get("ids") or ():
                client.post(f"/api/v1/jobs/{job_id}/cancel", headers=headers)
    problems = [f"{what}: {r.status_code} {error_code_of(r) or ''}".strip()
                for what, r in (("single submit", single), ("batch submit", batch))
                if r.status_code != 400]
    if single.status_code == 404 and error_code_of(single) == "RESOURCE_NOT_FOUND":
        yield report.not_applicable(
            "LIVE-DATE-RANGE", "the target has no `default` queue for the probe", *evidence)
    elif problems:
        yield report.failed(
            "LIVE-DATE-RANGE", f"scheduled_for {OUT_OF_RANGE} was not refused: "
            + "; ".join(problems), *evidence, expected="400 VALIDATION_001",
            actual=problems[0])
    else:
        yield report.passed(
            "LIVE-DATE-RANGE", f"scheduled_for {OUT_OF_RANGE}: 400 on the single and the batch "
            "submit", *evidence)


#: The contract's bounds (priority 0-9, max_attempts 1-10): one value past each end.
OUT_OF_RANGE_VALUES = (("priority", 10), ("priority", -1), ("max_attempts", 0),
                       ("max_attempts", 11))


@check("LIVE-VALUE-RANGE", needs=("target",))
def value_range(ctx: CheckContext) -> Iterator[Finding]:
    """priority and max_attempts past their bounds get 400 VALIDATION_001, on a queue that exists.

    The queue is a throwaway one the run makes (a missing queue's 404 would hide the answer);
    whatever a broken server accepts is cancelled, and the queue removed.
    """
    report = Report(f"{__name__}.value_range")
    item = "LIVE-VALUE-RANGE"
    if not may_write(ctx):
        yield report.not_applicable(
            item, "a server that accepts the values stores a job: give --allow-writes")
        return
    with client_for(ctx) as client:
        headers = yield from credential_or_findings(
            report, [item], "no credential: give --token, --api-key or --email/--password",
            lambda: auth_headers(ctx, client),
        )
        if headers is None:
            return
        queue = f"conformance-range-{secrets.token_hex(4)}"
        made = client.post("/api/v1/queues", json={"name": queue}, headers=headers)
        if made.status_code not in (200, 201):
            yield report.not_applicable(
                item, f"the run could not create a queue to probe ({made.status_code}): give a "
                "credential with queue:write")
            return
        evidence, problems = [], []
        try:
            for field, value in OUT_OF_RANGE_VALUES:
                response = client.post("/api/v1/jobs", headers=headers, json={
                    "queue_name": queue, "job_type": "conformance_value_range", "payload": {},
                    field: value})
                what = f"{field} {value}"
                evidence.append(client.evidence(response, f"POST /api/v1/jobs, {what}"))
                code = error_code_of(response)
                if response.status_code != 400 or code != "VALIDATION_001":
                    problems.append(f"{what}: {response.status_code} {code or ''}".strip())
                stored = payload_of(response)
                if response.status_code in (200, 201) and isinstance(stored, dict) \
                        and stored.get("id"):
                    client.post(f"/api/v1/jobs/{stored['id']}/cancel", headers=headers)
        finally:
            with contextlib.suppress(httpx.HTTPError):
                client.request("DELETE", f"/api/v1/queues/{queue}", headers=headers)
    if problems:
        yield report.failed(
            item, "out-of-range values were not refused: " + "; ".join(problems), *evidence,
            expected="400 VALIDATION_001", actual=problems[0])
    else:
        yield report.passed(
            item, f"{len(OUT_OF_RANGE_VALUES)} out-of-range priority/max_attempts values: 400 "
            "VALIDATION_001", *evidence)
