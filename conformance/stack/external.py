"""The external provider: a deployment the user names by URL; nothing is started or stopped."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from conformance.stack.base import StackConfigError, Target


def _url(option: str, value: str | None, schemes: tuple[str, ...], *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise StackConfigError(f"--{option} is required for an external target")
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes:
        raise StackConfigError(
            f"--{option}: expected a {' or '.join(s + '://' for s in schemes)} URL, "
            f"got {parts.scheme + '://' if parts.scheme else 'no scheme'}"
        )
    try:
        parts.port  # noqa: B018 - a port out of range or not a number raises here
    except ValueError:
        raise StackConfigError(f"--{option}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise StackConfigError(f"--{option}: the URL names no host")
    return value


@contextlib.contextmanager
def external_stack(
    *,
    target_url: str | None = None,
    database_url: str | None = None,
    redis_url: str | None = None,
    ca_bundle: str | Path | None = None,
    log_file: str | Path | None = None,
    resolve: Sequence[str] | None = None,
    **unknown: object,
) -> Iterator[Target]:
    """Wrap the user's URLs in a Target after checking their form (not their reachability)."""
    if unknown:
        raise StackConfigError(f"an external target takes no option {', '.join(sorted(unknown))}")
    base = _url("target-url", target_url, ("https", "http"), required=True)
    assert base is not None
    if urlsplit(base).query or urlsplit(base).fragment:
        raise StackConfigError("--target-url: give the base URL, without a query or fragment")
    ca = Path(ca_bundle) if ca_bundle else None
    if ca is not None and not ca.is_file():
        raise StackConfigError(f"--ca-bundle {ca}: no such file")
    log = Path(log_file) if log_file else None
    if log is not None and not log.is_file():
        raise StackConfigError(f"--log-file {log}: no such file")
    from conformance.resolve import ResolveSpecError, parse_resolve

    try:
        for spec in resolve or ():
            parse_resolve(spec)
    except ResolveSpecError as exc:
        raise StackConfigError(str(exc)) from None
    yield Target(
        base_url=base.rstrip("/"),
        provider="external",
        is_reference=False,
        ca_bundle=ca,
        database_url=_url("database-url", database_url, ("postgresql", "postgres"),
                          required=False),
        redis_url=_url("redis-url", redis_url, ("redis", "rediss"), required=False),
        log_file=log,
        resolve=tuple(resolve or ()),
    )
