"""The application's log lines: they arrive, they are JSON with the contract's fields, they hold no
secret, and they show no errors.

Lines come from a file (--log-file, or the reference stack's) or a command's output (--log-command,
e.g. `docker compose logs --no-color --tail 2000 app`), bounded in size and time.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import httpx

from conformance.checks.live.common import (
    Report,
    database_url_of,
    log_file_of,
    shorten,
    target_env,
)
from conformance.checks.live.http import LoginError, auth_headers, client_for, secrets_in_use
from conformance.checks.registry import Blocked, blocked, check
from conformance.model import Evidence

if TYPE_CHECKING:
    from conformance.checks.registry import CheckContext
    from conformance.model import Finding

MAX_LOG_BYTES = 8 * 1024 * 1024  # the tail we read: recent lines are what a run produced
COMMAND_TIMEOUT_SECONDS = 30.0
MARKER_WAIT_SECONDS = 5.0
REQUIRED_FIELDS = ("timestamp", "level", "message")
#: Lines about a request (they name its method, path or status) must also carry its request_id;
#: lines outside any request (startup, shutdown, the job runners) have none to carry.
REQUEST_FIELDS = ("method", "path", "status")
ERROR_LEVELS = frozenset({"error", "critical", "fatal", "panic", "emergency", "alert"})
#: Error levels in text lines: upper-case words, or structlog's "[error    ]" console column.
_TEXT_ERROR = re.compile(r"\b(ERROR|CRITICAL|FATAL|PANIC)\b|\[\s*(error|critical)\s*\]")
LOG_ITEMS = ("LIVE-LOGGING", "LIVE-LOG-JSON", "LIVE-LOG-NO-SECRETS", "LIVE-LOG-ERRORS")
#: Secrets shorter than this are not searched for: they would match by accident.
MIN_SECRET_SEARCH_LENGTH = 6


@dataclass(frozen=True, slots=True)
class LogSource:
    description: str
    evidence: Evidence


class LogUnavailable(RuntimeError):
    pass


def read_log(ctx: CheckContext) -> tuple[list[str], LogSource]:
    """The last lines of the log, from the file or the command; raises LogUnavailable."""
    log_file = log_file_of(ctx)
    if ctx.log_command:
        try:
            result = subprocess.run(
                shlex.split(ctx.log_command), capture_output=True,
                timeout=COMMAND_TIMEOUT_SECONDS, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LogUnavailable(f"--log-command failed: {exc}") from None
        if result.returncode != 0:
            raise LogUnavailable(
                f"--log-command exited {result.returncode}: "
                f"{result.stderr.decode(errors='replace').strip()[-200:]}"
            )
        data = (result.stdout + result.stderr)[-MAX_LOG_BYTES:]
        source = LogSource(
            f"the output of {ctx.log_command!r}",
            Evidence(kind="command", command=ctx.log_command, summary="log lines read"),
        )
    elif log_file is not None:
        try:
            with log_file.open("rb") as handle:
                handle.seek(0, 2)
                size = handle.tell()
                handle.seek(max(0, size - MAX_LOG_BYTES))
                data = handle.read()
        except OSError as exc:
            raise LogUnavailable(f"cannot read {log_file}: {exc.strerror}") from None
        source = LogSource(str(log_file), Evidence(kind="file", file=str(log_file)))
    else:
        raise LogUnavailable("no log source: give --log-file or --log-command")
    lines = data.decode("utf-8", errors="replace").splitlines()
    if len(data) == MAX_LOG_BYTES and lines:
        lines = lines[1:]  # the first line of a tail is cut
    return [line for line in lines if line.strip()], source


def parse_line(line: str) -> dict[str, Any] | None:
    # `docker compose logs` prefixes "service  | "; the JSON starts at the first brace.
    start = line.find("{")
    if start < 0:
        return None
    try:
        value = json.loads(line[start:])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def missing_fields(record: dict[str, Any]) -> list[str]:
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if any(name in record for name in REQUEST_FIELDS) and not record.get("request_id"):
        missing.append("request_id")
    return missing


def known_secrets(ctx: CheckContext) -> dict[str, str]:
    """Secrets the logs must not contain: the run's credentials and the stack's settings."""
    found = secrets_in_use(ctx)
    env = target_env(ctx)
    for name in ("JWT_SECRET", "JWT_REFRESH_SECRET", "DB_PASSWORD", "REDIS_PASSWORD",
                 "SMTP_PASSWORD", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"):
        if env.get(name):
            found[name] = env[name]
    for name, url in (("DATABASE_URL", env.get("DATABASE_URL") or database_url_of(ctx)),
                      ("REDIS_URL", env.get("REDIS_URL"))):
        if not url:
            continue
        password = urlsplit(url).password
        if password:
            found[f"the password of {name}"] = unquote(password)
            found[f"{name} with its password"] = url
    return {k: v for k, v in found.items() if len(v) >= MIN_SECRET_SEARCH_LENGTH}


def _emit_marker(ctx: CheckContext, marker: str, returned: list[str]) -> str | Blocked | None:
    """One anonymous and one authenticated request carrying our request id, so the log has both.

    `returned` gets the ids the server answered with other than ours (it did not echo it): the
    log is searched for those too. Returns why the requests could not be sent (Blocked when the
    target cannot be judged over HTTP: the log lines are still judged), or None.
    """

    def note(response: httpx.Response) -> None:
        given = response.headers.get("x-request-id")
        if given and given != marker:
            returned.append(given)

    try:
        with client_for(ctx) as client:
            note(client.get("/health", headers={"X-Request-ID": marker}))
            try:
                headers = auth_headers(ctx, client)
            except LoginError:
                headers = None
            if headers:
                note(client.get("/api/v1/auth/validate",
                                headers={**headers, "X-Request-ID": marker}))
    except Blocked as exc:
        return exc
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@check(*LOG_ITEMS, needs=("target",))
def log_lines(ctx: CheckContext) -> Iterator[Finding]:
    """Our request is logged; every line is JSON with the contract's fields; no secrets."""
    report = Report(f"{__name__}.log_lines")
    marker = f"conformance-{uuid.uuid4().hex}"
    returned: list[str] = []
    unsent = _emit_marker(ctx, marker, returned)
    wanted = [marker, *returned]
    # Without a marker request there is nothing to wait for: read the log once.
    deadline = time.monotonic() + (0 if unsent else MARKER_WAIT_SECONDS)
    try:
        while True:
            lines, source = read_log(ctx)
            if any(w in line for line in lines for w in wanted) or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # the server may flush its log a moment later
    except LogUnavailable as exc:
        for item in LOG_ITEMS:
            yield report.not_applicable(item, str(exc))
        return
    evidence = source.evidence
    if isinstance(unsent, Blocked):
        yield blocked("LIVE-LOGGING", report.check, unsent.by, unsent.message)
    elif unsent:
        yield report.failed(
            "LIVE-LOGGING", f"could not send a request to find in the log: {unsent}", evidence
        )
    elif any(marker in line for line in lines):
        yield report.passed(
            "LIVE-LOGGING", f"our request {marker} appears in {source.description}", evidence
        )
    elif any(r in line for line in lines for r in returned):
        # Logged, under the id the server made up: the missing echo is LIVE-REQUEST-ID's.
        yield report.passed(
            "LIVE-LOGGING", f"our request appears in {source.description} under the server's id "
            f"{returned[0]}; the server did not echo our X-Request-ID {marker} (LIVE-REQUEST-ID)",
            evidence)
    else:
        yield report.failed(
            "LIVE-LOGGING",
            f"our request {marker} did not appear in {source.description} "
            f"within {MARKER_WAIT_SECONDS:.0f}s ({len(lines)} lines read)",
            evidence, expected=f"a line with request_id {marker}", actual="none",
        )

    records = [(number, line, parse_line(line)) for number, line in enumerate(lines, 1)]
    not_json = [(n, line) for n, line, record in records if record is None]
    incomplete = [
        (n, missing) for n, _, record in records
        if record is not None and (missing := missing_fields(record))
    ]
    if not lines:
        yield report.failed("LIVE-LOG-JSON", f"{source.description} has no lines", evidence)
    elif not_json or incomplete:
        examples = [f"line {n}: not JSON: {shorten(line, 120)}" for n, line in not_json[:3]]
        examples += [f"line {n}: missing {', '.join(fields)}" for n, fields in incomplete[:3]]
        yield report.failed(
            "LIVE-LOG-JSON",
            f"{len(not_json)} of {len(lines)} lines are not JSON, {len(incomplete)} lack fields: "
            + "; ".join(examples),
            evidence,
            expected=f"JSON objects with {', '.join(REQUIRED_FIELDS)} (and request_id on requests)",
        )
    else:
        yield report.passed(
            "LIVE-LOG-JSON",
            f"{len(lines)} lines, all JSON with {', '.join(REQUIRED_FIELDS)}; "
            "request lines with their request_id",
            evidence,
        )

    secrets = known_secrets(ctx)
    leaks = sorted({name for name, value in secrets.items() for line in lines if value in line})
    if leaks:
        yield report.failed(
            "LIVE-LOG-NO-SECRETS", f"the log contains {', '.join(leaks)}", evidence,
            expected="no secret in any line", actual=", ".join(leaks),
        )
    elif secrets:
        yield report.passed(
            "LIVE-LOG-NO-SECRETS",
            f"none of {len(secrets)} known secrets ({', '.join(sorted(secrets))}) in "
            f"{len(lines)} lines", evidence,
        )
    else:
        yield report.not_applicable("LIVE-LOG-NO-SECRETS", "no secret known to search for")

    errors = []
    for number, line, record in records:
        level = str(record.get("level", "")).lower() if record is not None else ""
        if level in ERROR_LEVELS or (record is None and _TEXT_ERROR.search(line)):
            errors.append(f"line {number}: {shorten(line, 160)}")
    if errors:
        yield report.failed(
            "LIVE-LOG-ERRORS", f"{len(errors)} error lines; first: " + "; ".join(errors[:3]),
            evidence, expected="no error-level lines", actual=f"{len(errors)} lines",
        )
    else:
        yield report.passed(
            "LIVE-LOG-ERRORS", f"no error-level line in {len(lines)} lines", evidence
        )
