"""Defensive redaction of secrets in evidence before any report is written.

Checks redact their own evidence; this second pass catches what slips through (a bearer token in
a curl command, a password in a URL, a secret in an env file excerpt), because a report is handed
around far more widely than the deployment it describes.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from conformance.model import Evidence, Finding, RunResult

MASK = "***"

#: Header names whose values are credentials, whatever the check thought.
SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "x-auth-token",
        "x-csrf-token",
    }
)

_URL_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)([^/\s:@'\"]+):([^/\s@'\"]+)@")
_HEADER_LINE = re.compile(
    r"(?i)\b(authorization|proxy-authorization|cookie|set-cookie|x-api-key|api-key|x-auth-token"
    r"|x-csrf-token)(\s*:\s*)[^'\"\r\n]*"
)
# A bearer credential, not the word in prose: real tokens carry digits or punctuation.
_BEARER = re.compile(
    r"(?i)\b(bearer)(\s+)(?=[A-Za-z0-9._~+/=-]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}"
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# KEY=value (env files, query strings, form bodies) for keys that name a secret.
_ASSIGNMENT = re.compile(
    r"(?i)\b([A-Za-z0-9_.-]*(?:password|passwd|secret|token|api_?key|private_?key)[A-Za-z0-9_]*)"
    r"(=)(?!\*\*\*)([^&\s'\",;]+)"
)
# "key": "value" in JSON bodies.
_JSON_FIELD = re.compile(
    r"(?i)(\"[A-Za-z0-9_]*(?:password|passwd|secret|token|api_?key|private_?key)[A-Za-z0-9_]*\""
    r"\s*:\s*)\"(?!\*\*\*)[^\"]*\""
)
_CURL_USER = re.compile(r"((?:^|\s)(?:-u|--user)\s+['\"]?)([^:\s'\"]+):([^\s'\"]+)")


def redact_text(text: str) -> str:
    """Mask credentials in free text: URLs, headers, bearer tokens, JWTs, secret assignments."""
    text = _URL_USERINFO.sub(rf"\1\2:{MASK}@", text)
    text = _HEADER_LINE.sub(rf"\1\2{MASK}", text)
    text = _BEARER.sub(rf"\1\2{MASK}", text)
    text = _JWT.sub(MASK, text)
    text = _ASSIGNMENT.sub(rf"\1\2{MASK}", text)
    text = _JSON_FIELD.sub(rf'\1"{MASK}"', text)
    return _CURL_USER.sub(rf"\1\2:{MASK}", text)


def redact_light(text: str) -> str:
    """Mask only unmistakable credentials (for expected/actual, which quote settings by name)."""
    text = _URL_USERINFO.sub(rf"\1\2:{MASK}@", text)
    text = _BEARER.sub(rf"\1\2{MASK}", text)
    return _JWT.sub(MASK, text)


def redact_headers(headers: dict[str, str]) -> dict[str, str]:
    return {
        name: MASK if name.lower() in SENSITIVE_HEADERS else redact_light(value)
        for name, value in headers.items()
    }


#: JSON fields whose values are credentials (the contract's TokenPair, LoginRequest, ApiKeyCreated
#: and their kin); `token_type` and `idempotency_key` name no secret.
_SECRET_FIELD = re.compile(r"(?i)(password|passwd|secret|token|api_?key|private_?key|credential)")
_PUBLIC_FIELDS = frozenset({"token_type", "idempotency_key"})
#: Command-line options whose value is a credential (--password, --api-key, --jwt-secret, ...).
_SECRET_OPTION = re.compile(r"(?i)^--?[a-z0-9-]*(password|passwd|secret|token|api-key|apikey"
                            r"|private-key|credential)[a-z0-9-]*$")


def is_secret_field(name: str) -> bool:
    """Whether a JSON field or header of that name carries a credential."""
    lower = name.lower()
    if lower in _PUBLIC_FIELDS:
        return False
    return lower == "key" or lower in SENSITIVE_HEADERS or bool(_SECRET_FIELD.search(lower))


def redact_json(value: Any) -> Any:
    """A JSON value with every credential field's value masked, at any depth."""
    if isinstance(value, dict):
        return {k: _mask_field(v) if is_secret_field(str(k)) else redact_json(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    if isinstance(value, str):
        return redact_light(value)
    return value


def _mask_field(value: Any) -> Any:
    # A credential is a string (a header: a list of them); a schema or a form below such a
    # name is walked instead, so its own credential fields are masked and the rest kept.
    if isinstance(value, str):
        return MASK if value else value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [MASK for _ in value]
    return redact_json(value)


def redact_body(text: str) -> str:
    """A request or response body with its credentials masked (JSON fields, or as free text)."""
    try:
        document = json.loads(text)
    except ValueError:
        return redact_text(text)
    if not isinstance(document, dict | list):
        return redact_text(text)
    masked = redact_json(document)
    return text if masked == document else json.dumps(masked, ensure_ascii=False)


def mask_values(text: str, secrets: Iterable[str]) -> str:
    """Every occurrence of the given credential values masked (longest first)."""
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def mask_argv(argv: Sequence[str]) -> list[str]:
    """A command line fit for a report: credential options' values masked, URLs' passwords too."""
    masked: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            masked.append(MASK)
            hide_next = False
            continue
        name, equals, _ = arg.partition("=")
        if _SECRET_OPTION.match(name):
            masked.append(f"{name}={MASK}" if equals else arg)
            hide_next = not equals
            continue
        masked.append(redact_text(arg))
    return masked


def _opt(text: str | None) -> str | None:
    return None if text is None else redact_text(text)


def redact_evidence(evidence: Evidence) -> Evidence:
    return dataclasses.replace(
        evidence,
        summary=redact_text(evidence.summary),
        curl=_opt(evidence.curl),
        headers=redact_headers(evidence.headers),
        command=_opt(evidence.command),
        output=_opt(evidence.output),
    )


def _redact_finding(finding: Finding) -> Finding:
    return dataclasses.replace(
        finding,
        message=redact_light(finding.message),
        expected=None if finding.expected is None else redact_light(finding.expected),
        actual=None if finding.actual is None else redact_light(finding.actual),
        evidence=tuple(redact_evidence(e) for e in finding.evidence),
    )


def redact_result(result: RunResult) -> RunResult:
    """The same run with every finding's evidence passed through the redaction rules."""
    items = tuple(
        dataclasses.replace(item, findings=tuple(_redact_finding(f) for f in item.findings))
        for item in result.items
    )
    run = dataclasses.replace(
        result.run, target=None if result.run.target is None else redact_light(result.run.target)
    )
    return RunResult(run=run, items=items)

