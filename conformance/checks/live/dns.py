"""OPS-DOMAIN-DNS (guide 4.1 "Domain telah diarahkan ke server"): BASE_URL's host resolves to
the target, judged with the system resolver, bounded in time.

Only the name is looked up; nothing is contacted. When the run maps the name itself
(`--resolve`) or the target is addressed by a name that is not BASE_URL's, DNS is not what the
run used, and the item says what to give instead of guessing.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from conformance.checks.live.common import Report, target_of
from conformance.checks.registry import CheckContext, check
from conformance.checks.static.env import parse_env
from conformance.model import Evidence, Finding
from conformance.resolve import resolve_map

ITEM = "OPS-DOMAIN-DNS"
LOOKUP_TIMEOUT_SECONDS = 5.0


def lookup(host: str, timeout: float = LOOKUP_TIMEOUT_SECONDS) -> set[str] | str:
    """The host's addresses, or why there are none ("timed out" after `timeout`)."""
    result: dict[str, set[str] | str] = {}

    def resolve() -> None:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
            result["value"] = {str(info[4][0]) for info in infos}
        except (OSError, UnicodeError) as exc:
            result["value"] = str(exc)

    worker = threading.Thread(target=resolve, daemon=True)  # getaddrinfo has no timeout of its own
    worker.start()
    worker.join(timeout)
    return result.get("value", f"no answer within {timeout:g} s")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@check(ITEM, needs=("target",))
def domain_points_at_target(ctx: CheckContext) -> Iterator[Finding]:
    report = Report(f"{__name__}.domain_points_at_target")
    target = target_of(ctx)
    base_url = parse_env(ctx.env_file).get("BASE_URL") if ctx.env_file is not None else None
    base_url = base_url or target.base_url
    host = (urlsplit(base_url).hostname or "").lower()
    target_parts = urlsplit(target.base_url)
    target_host = (target_parts.hostname or "").lower()
    if target.is_reference:
        yield report.not_applicable(
            ITEM, "the reference stack runs on this machine under the example's domain: there is "
            "no DNS record to judge")
        return
    if not host or _is_address(host):
        yield report.not_applicable(ITEM, f"BASE_URL ({base_url}) names no domain to look up")
        return
    mapped = [a for (name, _port), a in resolve_map(target.resolve).items() if name == host]
    if mapped:
        yield report.not_applicable(
            ITEM, f"this run maps {host} to {mapped[0]} with --resolve, so it does not use DNS: "
            "run without --resolve (or attest `dig +short` output) to judge the record")
        return
    if target_host != host and not _is_address(target_host):
        yield report.not_applicable(
            ITEM, f"the target is {target_host}, not BASE_URL's {host}: give --target-url "
            f"https://{host} or the server's address")
        return
    found = lookup(host)
    evidence = Evidence(kind="command", command=f"getaddrinfo({host})",
                        output=", ".join(sorted(found)) if isinstance(found, set) else found)
    if isinstance(found, str):
        yield report.failed(ITEM, f"{host} (BASE_URL) does not resolve: {found}", evidence,
                            expected=f"an A/AAAA record for {host}", actual=found)
        return
    if target_host == host or target_host.strip("[]") in found:
        yield report.passed(ITEM, f"{host} resolves to {', '.join(sorted(found))}, where the "
                            "target answers", evidence)
        return
    yield report.failed(
        ITEM, f"{host} (BASE_URL) resolves to {', '.join(sorted(found))}, not to the target "
        f"{target_host}: clients and certificate issuers reach another machine", evidence,
        expected=target_host, actual=", ".join(sorted(found)))
