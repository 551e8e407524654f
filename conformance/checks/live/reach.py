"""Whether the live target can be judged over HTTP at all: its certificate verifies, it answers.

A target whose certificate does not verify (and neither --ca-bundle nor --insecure says how to
treat it) cannot be judged by the HTTP checks: each of them would only report the same TLS error.
The LIVE-TLS-* checks judge the certificate; every other HTTP check is `blocked` by the item
the verification error names (LIVE-TLS-HOSTNAME for a name mismatch, LIVE-TLS-EXPIRY for an
expired certificate, else LIVE-TLS-CHAIN), with that cause's fix. A target that stops
answering during the run blocks the checks after that point
by `reachability`. Both are decided once per process and target, with one bounded probe.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from conformance.checks.registry import Blocked
from conformance.model import REACHABILITY
from conformance.resolve import ResolveMap, address_for, transport

if TYPE_CHECKING:
    from conformance.stack import Target

TLS_ITEM = "LIVE-TLS-CHAIN"
#: OpenSSL's X509_V_ERR_* codes -> (the item that blocks the HTTP checks, its fix).
HOSTNAME_CODES = frozenset({62, 64})  # hostname mismatch, IP address mismatch
EXPIRED_CODE = 10
CHAIN_FIX = ("give the CA that signed it with --ca-bundle PEM, or --insecure to run the other "
             "checks without verifying it")
HOSTNAME_FIX = ("serve a certificate for the right name (the one clients use), or --resolve "
                "HOST:PORT:ADDRESS to reach it by its name; --insecure runs the other checks "
                "without verifying it")
EXPIRY_FIX = "renew the certificate, or --insecure to run the other checks without verifying it"
PROBE_TIMEOUT_SECONDS = 4.0
#: How long a target that stopped answering is taken for gone before it is tried again.
GONE_SECONDS = 30.0
CERTIFICATE_SECONDS = 60.0

_LOCK = threading.Lock()
#: (base URL, CA bundle) -> (when, problem); decided again after CERTIFICATE_SECONDS, so a
#: long-lived process (a test session) never reuses a verdict for another server on that port.
_CERTIFICATES: dict[tuple[str, str], tuple[float, CertificateFault | None]] = {}
_GONE: dict[str, tuple[float, str]] = {}  # base URL -> (since, why it is taken for gone)


@dataclass(frozen=True, slots=True)
class CertificateFault:
    """Why a certificate does not verify: the message, the LIVE-TLS-* item it is, its fix."""

    message: str
    item: str = TLS_ITEM
    fix: str = CHAIN_FIX

    @classmethod
    def of(cls, exc: ssl.SSLCertVerificationError) -> CertificateFault:
        message = str(exc.verify_message or exc.reason or exc)
        if exc.verify_code in HOSTNAME_CODES:
            return cls(message, "LIVE-TLS-HOSTNAME", HOSTNAME_FIX)
        if exc.verify_code == EXPIRED_CODE:
            return cls(message, "LIVE-TLS-EXPIRY", EXPIRY_FIX)
        return cls(message)

    def __str__(self) -> str:
        return self.message


def certificate_problem(base_url: str, ca_bundle: Path | None = None, *,
                        timeout: float = PROBE_TIMEOUT_SECONDS,
                        resolve: ResolveMap | None = None) -> CertificateFault | None:
    """Why the certificate of an https:// target does not verify (chain or hostname), else None.

    None too when the URL is not https or no TLS connection can be made (reachability is
    judged elsewhere).
    """
    parts = urlsplit(base_url)
    if parts.scheme != "https" or not parts.hostname:
        return None
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    port = parts.port or 443
    address = (address_for(parts.hostname, port, resolve or {}), port)  # --resolve, as curl
    try:
        with socket.create_connection(address, timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=parts.hostname):
            return None
    except ssl.SSLCertVerificationError as exc:
        return CertificateFault.of(exc)
    except (OSError, ssl.SSLError):
        return None


def certificate_line(base_url: str, problem: CertificateFault, ca_bundle: Path | None) -> str:
    """One line for the user: what is wrong and the ways on."""
    against = f" against --ca-bundle {ca_bundle}" if ca_bundle else ""
    return f"the certificate of {base_url} does not verify{against} ({problem}): {problem.fix}"


def gate(target: Target, *, insecure: bool) -> None:
    """Raise Blocked when the target cannot be judged over HTTP (called before each HTTP check)."""
    with _LOCK:
        gone = _GONE.get(target.base_url)
    if gone is not None and time.monotonic() - gone[0] < GONE_SECONDS:
        raise Blocked(REACHABILITY, gone[1])
    if insecure:
        return
    key = (target.base_url, str(target.ca_bundle))
    with _LOCK:
        cached = _CERTIFICATES.get(key)
    if cached is not None and time.monotonic() - cached[0] < CERTIFICATE_SECONDS:
        problem = cached[1]
    else:
        problem = certificate_problem(target.base_url, target.ca_bundle,
                                      resolve=target.resolve_map)
        with _LOCK:
            _CERTIFICATES[key] = (time.monotonic(), problem)
    if problem is not None:
        raise Blocked(problem.item, "not judged: " + certificate_line(
            target.base_url, problem, target.ca_bundle) + " (the LIVE-TLS-* items report it)")


def after_transport_error(target: Target, verify: ssl.SSLContext | bool, method: str,
                          path: str, exc: httpx.TransportError) -> None:
    """After a request failed below HTTP: if the target no longer answers at all, it is gone.

    One bounded probe of /health; any HTTP answer means the target is there and the caller
    handles its own error. Otherwise Blocked (reachability), for this and every later check.
    """
    try:
        with httpx.Client(transport=transport(target.resolve_map, verify=verify),
                          timeout=httpx.Timeout(PROBE_TIMEOUT_SECONDS),
                          follow_redirects=False) as client:
            client.get(f"{target.base_url.rstrip('/')}/health")
        return
    except httpx.HTTPError:
        pass
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    why = (f"not judged: the target stopped answering during the run ({reason} on "
           f"{method} {path}; /health did not answer either)")
    with _LOCK:
        _GONE[target.base_url] = (time.monotonic(), why)
    raise Blocked(REACHABILITY, why)
