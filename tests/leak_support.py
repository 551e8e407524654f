"""Greps every file a run wrote for the credentials it used or received.

A credential may sit in a file as itself, inside a base64-encoded body (schemathesis' NDJSON) or
as a JWT or API key the run received and never saw by value; each form is looked for.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from pathlib import Path

#: What the reference server hands out: HS256 JWTs (access, refresh) and `tf_` API keys.
RECEIVED = {
    "jwt": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    "api key": re.compile(r"\btf_[A-Za-z0-9]{24,}"),
}
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def _readable(text: str) -> Iterable[str]:
    yield text
    for run in _BASE64.findall(text):
        try:
            yield base64.b64decode(run + "=" * (-len(run) % 4)).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            continue


def leaks_in(text: str, where: str, known: Iterable[str] = ()) -> list[str]:
    """`where: what` for every credential found in one text."""
    values = [v for v in known if v]
    found = []
    for piece in _readable(text):
        found += [f"{where}: given credential {v[:6]}..." for v in values if v in piece]
        found += [f"{where}: {kind} {match[:12]}..."
                  for kind, pattern in RECEIVED.items() for match in pattern.findall(piece)]
    return sorted(set(found))


def leaks(root: Path, known: Iterable[str] = ()) -> list[str]:
    """`file: what` for every credential found in a file under root (an empty list: none)."""
    values = list(known)
    return sorted(
        leak
        for path in sorted(p for p in root.rglob("*") if p.is_file())
        for leak in leaks_in(path.read_bytes().decode("utf-8", "replace"),
                             str(path.relative_to(root)), values)
    )
