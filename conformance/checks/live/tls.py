"""TLS of the target: certificate chain, hostname, expiry, and the protocol versions it accepts.

Uses the standard library's ssl for handshakes and cryptography to read the certificate, so that a
certificate that fails verification can still be described (expiry, names) in the report.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cryptography import x509

from conformance.checks.live.common import Report, target_of
from conformance.checks.registry import check
from conformance.model import Evidence
from conformance.resolve import ResolveMap

if TYPE_CHECKING:
    from conformance.checks.registry import CheckContext
    from conformance.model import Finding

HANDSHAKE_TIMEOUT_SECONDS = 5.0
RENEW_WITHIN_DAYS = 30
TLS_ITEMS = (
    "LIVE-TLS-SERVED", "LIVE-TLS-CHAIN", "LIVE-TLS-HOSTNAME", "LIVE-TLS-EXPIRY", "LIVE-TLS-RENEWAL",
)
MODERN = frozenset({"TLSv1.2", "TLSv1.3"})  # as ssl.SSLSocket.version() names them


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    address: str | None = None  # where --resolve sends host:port (the name stays in SNI)

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


def endpoint_of(base_url: str, resolve: ResolveMap | None = None) -> Endpoint | None:
    """The TLS endpoint of an https URL; None for plain http."""
    parts = urlsplit(base_url)
    if parts.scheme != "https" or not parts.hostname:
        return None
    port = parts.port or 443
    return Endpoint(parts.hostname, port, (resolve or {}).get((parts.hostname.lower(), port)))


def _handshake(
    endpoint: Endpoint, context: ssl.SSLContext, server_hostname: str | None
) -> tuple[str | None, bytes | None]:
    """(negotiated version, peer certificate in DER) of one handshake."""
    with (
        socket.create_connection((endpoint.address or endpoint.host, endpoint.port),
                                 HANDSHAKE_TIMEOUT_SECONDS) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        return tls.version(), tls.getpeercert(binary_form=True)


def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _sni(host: str) -> str | None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host
    return None  # SNI carries names only


def hostname_matches(cert: x509.Certificate, host: str) -> bool:
    """RFC 6125 matching against the subjectAltName (IP addresses exactly, one leading wildcard)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return address in san.get_values_for_type(x509.IPAddress)
    host = host.lower().rstrip(".")
    for name in san.get_values_for_type(x509.DNSName):
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def describe(cert: x509.Certificate) -> str:
    return (
        f"subject {cert.subject.rfc4514_string()}, issuer {cert.issuer.rfc4514_string()}, "
        f"valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}"
    )


@check(*TLS_ITEMS, needs=("target",))
def certificate(ctx: CheckContext) -> Iterator[Finding]:
    """Chain valid against the CA, hostname in the certificate, days until it expires."""
    report = Report(f"{__name__}.certificate")
    target = target_of(ctx)
    endpoint = endpoint_of(target.base_url, target.resolve_map)
    if endpoint is None:
        for item in TLS_ITEMS:
            yield report.failed(
                item, f"{target.base_url} is not served over HTTPS",
                expected="an https:// base URL", actual=target.base_url,
            )
        return
    trust = str(target.ca_bundle) if target.ca_bundle else "the system trust store"
    _, der = _handshake(endpoint, _unverified_context(), _sni(endpoint.host))
    if der is None:
        for item in TLS_ITEMS:
            yield report.failed(item, f"{endpoint.label} presented no certificate")
        return
    cert = x509.load_der_x509_certificate(der)
    evidence = Evidence(
        kind="command", summary=describe(cert),
        command=f"openssl s_client -connect {endpoint.label} -showcerts"
        + (f" -CAfile {target.ca_bundle}" if target.ca_bundle else ""),
    )
    yield report.passed("LIVE-TLS-SERVED", f"{endpoint.label} serves HTTPS: {describe(cert)}")

    verify = ssl.create_default_context(cafile=str(target.ca_bundle) if target.ca_bundle else None)
    verify.check_hostname = False  # the hostname is judged on its own below
    try:
        _handshake(endpoint, verify, _sni(endpoint.host))
    except ssl.SSLCertVerificationError as exc:
        yield report.failed(
            "LIVE-TLS-CHAIN", f"the chain does not verify against {trust}: {exc.verify_message}",
            evidence, expected=f"a chain to {trust}", actual=str(exc.verify_message),
        )
    else:
        yield report.passed("LIVE-TLS-CHAIN", f"the chain verifies against {trust}", evidence)

    if hostname_matches(cert, endpoint.host):
        yield report.passed(
            "LIVE-TLS-HOSTNAME", f"the certificate names {endpoint.host}", evidence
        )
    else:
        yield report.failed(
            "LIVE-TLS-HOSTNAME", f"the certificate does not name {endpoint.host}", evidence,
            expected=endpoint.host, actual=describe(cert),
        )

    now = datetime.now(UTC)
    days_left = (cert.not_valid_after_utc - now).days
    if cert.not_valid_before_utc > now:
        yield report.failed(
            "LIVE-TLS-EXPIRY", f"the certificate is not valid before {cert.not_valid_before_utc}",
            evidence,
        )
    elif days_left < 0:
        yield report.failed(
            "LIVE-TLS-EXPIRY", f"the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}",
            evidence, expected="not expired", actual=f"expired {-days_left} days ago",
        )
    else:
        yield report.passed(
            "LIVE-TLS-EXPIRY", f"valid for {days_left} more days", evidence
        )
    if days_left < RENEW_WITHIN_DAYS:
        yield report.failed(
            "LIVE-TLS-RENEWAL",
            f"renew now: the certificate expires in {days_left} days "
            f"({cert.not_valid_after_utc:%Y-%m-%d})",
            evidence, expected=f"at least {RENEW_WITHIN_DAYS} days left", actual=f"{days_left}",
        )
    else:
        yield report.passed(
            "LIVE-TLS-RENEWAL", f"{days_left} days left (renewal due under {RENEW_WITHIN_DAYS})",
            evidence,
        )


def _legacy_context(version: ssl.TLSVersion) -> ssl.SSLContext:
    context = _unverified_context()
    with warnings.catch_warnings():
        # Deprecated protocols are exactly what this probe must offer.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = version
        context.maximum_version = version
    # Let our side offer old protocols even where the system policy forbids them.
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def legacy_refused(endpoint: Endpoint, version: ssl.TLSVersion) -> bool | None:
    """True when the server refuses a handshake at this version; None when we cannot offer it."""
    try:
        context = _legacy_context(version)
    except (ssl.SSLError, ValueError):
        return None
    try:
        _handshake(endpoint, context, _sni(endpoint.host))
    except ssl.SSLError as exc:
        if "NO_PROTOCOLS_AVAILABLE" in str(exc.reason or "").upper():
            return None  # refused by our own library before anything was sent
        return True
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, TimeoutError):
        return True
    return False


@check("LIVE-TLS-PROTOCOLS", needs=("target",))
def protocols(ctx: CheckContext) -> Iterator[Finding]:
    """TLS 1.2 or newer is negotiated, and TLS 1.0 and 1.1 handshakes are refused."""
    report = Report(f"{__name__}.protocols")
    target = target_of(ctx)
    endpoint = endpoint_of(target.base_url, target.resolve_map)
    if endpoint is None:
        yield report.failed("LIVE-TLS-PROTOCOLS", f"{target.base_url} is not served over HTTPS")
        return
    negotiated, _ = _handshake(endpoint, _unverified_context(), _sni(endpoint.host))
    accepted, untested = [], []
    for version, name in ((ssl.TLSVersion.TLSv1, "TLSv1"), (ssl.TLSVersion.TLSv1_1, "TLSv1.1")):
        refused = legacy_refused(endpoint, version)
        if refused is None:
            untested.append(name)
        elif not refused:
            accepted.append(name)
    evidence = Evidence(
        kind="command", summary=f"negotiated {negotiated}",
        command=f"openssl s_client -connect {endpoint.label} -tls1 (and -tls1_1)",
    )
    if negotiated not in MODERN:
        yield report.failed(
            "LIVE-TLS-PROTOCOLS", f"negotiated {negotiated}", evidence,
            expected="TLSv1.2 or TLSv1.3", actual=str(negotiated),
        )
    elif accepted:
        yield report.failed(
            "LIVE-TLS-PROTOCOLS", f"the server accepts {', '.join(accepted)}", evidence,
            expected="TLSv1 and TLSv1.1 refused", actual=f"accepted: {', '.join(accepted)}",
        )
    else:
        note = f" ({', '.join(untested)} not tested: this machine's OpenSSL cannot offer it)" \
            if untested else ""
        yield report.passed(
            "LIVE-TLS-PROTOCOLS", f"negotiated {negotiated}; older versions refused{note}",
            evidence,
        )
