"""`--resolve HOST:PORT:ADDRESS`, as curl has it: reach a name at an address DNS does not give.

A run through the front door targets `https://<domain>:<port>` before DNS points at the machine
(guide 4.1), or at NGINX's port published on 127.0.0.1 on the docker stack. Requests keep the
name in the URL, the Host header and TLS (SNI and certificate verification); only the TCP
connection goes to ADDRESS. Every HTTP client of the kit takes its transport from here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

#: (host, port) -> address, host lower-cased.
ResolveMap = Mapping[tuple[str, int], str]


class ResolveSpecError(ValueError):
    """A --resolve value is not HOST:PORT:ADDRESS; the message is one line for the user."""


def parse_resolve(spec: str) -> tuple[str, int, str]:
    """HOST:PORT:ADDRESS (ADDRESS an IPv4 address, or IPv6 in brackets) as a triple."""
    host, sep, rest = spec.partition(":")
    port_text, sep2, address = rest.partition(":")
    if not sep or not sep2 or not host or not address:
        raise ResolveSpecError(f"--resolve {spec!r}: expected HOST:PORT:ADDRESS")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ResolveSpecError(f"--resolve {spec!r}: {port_text!r} is not a port")
    bare = address[1:-1] if address.startswith("[") and address.endswith("]") else address
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        raise ResolveSpecError(f"--resolve {spec!r}: {address!r} is not an IP address") from None
    return host.lower(), int(port_text), bare


def resolve_map(specs: Iterable[str]) -> dict[tuple[str, int], str]:
    return {(host, port): address for host, port, address in map(parse_resolve, specs)}


def _default_port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def address_for(host: str, port: int, mapping: ResolveMap) -> str:
    """Where a TCP connection to host:port goes: the mapped address, else the host itself."""
    return mapping.get((host.lower(), port), host)


def describe(url: str, mapping: ResolveMap) -> str:
    """`--resolve host:port:address` for curl reproducers and evidence; "" when not mapped."""
    parsed = httpx.URL(url)
    port = _default_port(parsed)
    address = mapping.get((parsed.host.lower(), port))
    if address is None:
        return ""
    shown = f"[{address}]" if ":" in address else address
    return f"--resolve {parsed.host}:{port}:{shown}"


class ResolvingTransport(httpx.BaseTransport):
    """Sends a request for a mapped host:port to its address, keeping name, Host header and SNI.

    Certificate verification is against the name (httpcore verifies the SNI host name), so a
    certificate for the domain passes and one for the address alone does not.
    """

    def __init__(self, inner: httpx.BaseTransport, mapping: ResolveMap) -> None:
        self._inner = inner
        self._mapping = dict(mapping)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        address = self._mapping.get((url.host.lower(), _default_port(url)))
        if address is None:
            return self._inner.handle_request(request)
        extensions: dict[str, Any] = dict(request.extensions)
        extensions.setdefault("sni_hostname", url.host)
        headers = request.headers.copy()
        headers.setdefault("Host", request.headers.get("Host", url.netloc.decode("ascii")))
        # The body is passed through as a stream: nothing is read twice.
        routed = httpx.Request(
            request.method, url.copy_with(host=address), headers=headers,
            stream=request.stream, extensions=extensions,
        )
        return self._inner.handle_request(routed)

    def close(self) -> None:
        self._inner.close()


def transport(mapping: ResolveMap | None, **kwargs: Any) -> httpx.BaseTransport:
    """An httpx.HTTPTransport(**kwargs), routed through `mapping` when it maps anything."""
    inner = httpx.HTTPTransport(**kwargs)
    return ResolvingTransport(inner, mapping) if mapping else inner
