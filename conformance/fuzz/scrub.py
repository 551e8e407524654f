"""Credentials out of the files schemathesis wrote, before anyone reads the run directory.

schemathesis masks the credential headers it knows, but keeps request and response bodies as
they were: a login's `access_token`, a created API key's `key`, a generated `password`. Those
files sit under reports/ and are handed around, so each is rewritten with every credential
field, header and known credential value masked (`cassette.yaml` bodies as text, `events.ndjson`
bodies base64-encoded).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from conformance.reporting.redact import (
    MASK,
    is_secret_field,
    mask_values,
    redact_body,
    redact_json,
    redact_text,
)

#: Files of the run directory that are whole documents rewritten field by field; every other
#: file is masked as text.
CASSETTE = "cassette.yaml"
EVENTS = "events.ndjson"


#: What any credential the redaction rules know looks like from afar (a field or header name, a
#: bearer, a JWT, a URL's userinfo, curl's -u): text without one of these is left as it is, so
#: a run of several hundred megabytes is read once rather than regex by regex.
_MAYBE_SECRET = re.compile(r"(?i)pass|secret|token|key|bearer|eyJ|@|authoriz|cookie|credential"
                           r"|-u\b|--user")
_HEADER_NAME = re.compile(r'^\s+"(?P<name>[^"]+)":$')
_HEADER_VALUE = re.compile(r"^(?P<indent>      - )")
_BODY_STRING = re.compile(r"^(?P<indent>\s+string: )(?P<value>\".*\")$")
_BODY_BASE64 = re.compile(r"^(?P<indent>\s+base64_string: )'(?P<value>[A-Za-z0-9+/=]*)'$")


def _replace(path: Path, lines: Iterable[str]) -> None:
    """Write atomically: a run stopped half-way must not leave a half-masked file."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.writelines(lines)
        shutil.copymode(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _text(value: str, known: tuple[str, ...]) -> str:
    if _MAYBE_SECRET.search(value):
        value = redact_text(value)
    return mask_values(value, known)


def _body(value: str, known: tuple[str, ...]) -> str:
    if _MAYBE_SECRET.search(value):
        value = redact_body(value)
    return mask_values(value, known)


def _bytes_body(encoded: str, known: tuple[str, ...]) -> str:
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return base64.b64encode(MASK.encode()).decode("ascii")
    text = raw.decode("utf-8", "replace")
    masked = _body(text, known)
    if masked == text:
        return encoded
    return base64.b64encode(masked.encode("utf-8")).decode("ascii")


def _walk(value: Any, known: tuple[str, ...]) -> Any:
    """One schemathesis event with its credentials masked; bodies decoded and re-encoded."""
    if isinstance(value, dict):
        if set(value) == {"$base64"} and isinstance(value["$base64"], str):
            return {"$base64": _bytes_body(value["$base64"], known)}
        return {
            key: (redact_json({key: item})[key]
                  if is_secret_field(str(key)) and isinstance(item, str | list)
                  else _body(item, known) if key == "body" and isinstance(item, str)
                  else _walk(item, known))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_walk(item, known) for item in value]
    if isinstance(value, str):
        return _text(value, known)
    return value


def scrub_events(path: Path, known: tuple[str, ...]) -> None:
    with path.open(encoding="utf-8") as stream:
        lines = [json.dumps(_walk(json.loads(line), known), ensure_ascii=False) + "\n"
                 for line in stream if line.strip()]
    _replace(path, lines)


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar on one line, as schemathesis writes bodies."""
    dumped = yaml.dump(text, Dumper=yaml.SafeDumper, default_style='"', width=1 << 30,
                       allow_unicode=True)
    return dumped.rstrip("\n")


def _cassette_line(line: str, header: str | None, known: tuple[str, ...]) -> str:
    body = _BODY_STRING.match(line)
    if body is not None:
        if not _MAYBE_SECRET.search(line) and not any(k in line for k in known):
            return line
        try:
            text = yaml.safe_load(body["value"])
        except yaml.YAMLError:
            return f'{body["indent"]}"{MASK}"'
        return f"{body['indent']}{_quoted(_body(str(text), known))}"
    encoded = _BODY_BASE64.match(line)
    if encoded is not None:
        return f"{encoded['indent']}'{_bytes_body(encoded['value'], known)}'"
    value = _HEADER_VALUE.match(line)
    if value is not None and header is not None and is_secret_field(header):
        return f'{value["indent"]}"{MASK}"'
    return _text(line, known)


def scrub_cassette(path: Path, known: tuple[str, ...]) -> None:
    """The VCR cassette, line by line: schemathesis writes each body and header value on one."""
    out = []
    header: str | None = None
    with path.open(encoding="utf-8") as stream:
        for raw in stream:
            line = raw.rstrip("\n")
            name = _HEADER_NAME.match(line)
            if name is not None:
                header = name["name"]
                out.append(raw)
                continue
            if _HEADER_VALUE.match(line) is None:
                header = None
            out.append(_cassette_line(line, header, known) + ("\n" if raw.endswith("\n") else ""))
    _replace(path, out)


def scrub_run_dir(run_dir: Path, known: Iterable[str]) -> None:
    """Mask credentials in every file of a fuzz run directory, in place."""
    values = tuple(v for v in known if v)
    for path in sorted(run_dir.iterdir()):
        if not path.is_file():
            continue
        if path.name == CASSETTE:
            scrub_cassette(path, values)
        elif path.name == EVENTS:
            scrub_events(path, values)
        else:
            text = path.read_text(encoding="utf-8", errors="replace")
            masked = mask_values(redact_text(text), values)
            if masked != text:
                _replace(path, [masked])
