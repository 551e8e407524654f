"""The TLS checks against TLS servers with deliberately bad certificates and protocol settings.

A small threaded TLS server stands in for the proxy: the checks only handshake, so what matters is
the certificate it presents and the protocol versions it accepts.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from live_support import run_checks, statuses

from conformance.checks.registry import CheckContext
from conformance.model import Status
from conformance.stack import Target

ACCEPT_TIMEOUT_SECONDS = 0.2
HANDSHAKE_TIMEOUT_SECONDS = 5.0


@contextlib.contextmanager
def tls_server(context: ssl.SSLContext) -> Iterator[int]:
    """Accept connections on 127.0.0.1 and complete (or refuse) TLS handshakes until closed."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(ACCEPT_TIMEOUT_SECONDS)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                raw, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
            with contextlib.suppress(OSError), context.wrap_socket(raw, server_side=True):
                pass  # the handshake is all the checks need
            raw.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def server_context(
    ca: trustme.CA,
    *identities: str,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    leaf = ca.issue_cert(*identities, not_before=not_before, not_after=not_after)
    leaf.configure_cert(context)
    return context


def context_for(port: int, ca_bundle: Path) -> CheckContext:
    target = Target(base_url=f"https://127.0.0.1:{port}", provider="external",
                    is_reference=False, ca_bundle=ca_bundle)
    return CheckContext(target=target)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    return authority, bundle


def certificate_statuses(context: ssl.SSLContext, ca_bundle: Path) -> dict[str, Status]:
    with tls_server(context) as port:
        return statuses(run_checks(context_for(port, ca_bundle), "tls.certificate"))


def test_a_good_certificate_passes(ca: tuple[trustme.CA, Path]) -> None:
    result = certificate_statuses(server_context(ca[0], "127.0.0.1"), ca[1])
    assert set(result.values()) == {Status.PASSED}, result


def test_an_expired_certificate_fails_expiry_and_renewal(ca: tuple[trustme.CA, Path]) -> None:
    now = datetime.now(UTC)
    context = server_context(
        ca[0], "127.0.0.1", not_before=now - timedelta(days=90), not_after=now - timedelta(days=1)
    )
    result = certificate_statuses(context, ca[1])
    assert result["LIVE-TLS-EXPIRY"] is Status.FAILED
    assert result["LIVE-TLS-RENEWAL"] is Status.FAILED
    # An expired certificate does not verify either; its name still matches.
    assert result["LIVE-TLS-CHAIN"] is Status.FAILED
    assert result["LIVE-TLS-HOSTNAME"] is Status.PASSED


def test_a_certificate_expiring_within_30_days_only_asks_for_renewal(
    ca: tuple[trustme.CA, Path],
) -> None:
    context = server_context(
        ca[0], "127.0.0.1", not_after=datetime.now(UTC) + timedelta(days=10)
    )
    result = certificate_statuses(context, ca[1])
    assert result.pop("LIVE-TLS-RENEWAL") is Status.FAILED
    assert set(result.values()) == {Status.PASSED}, result


def test_a_certificate_for_another_name_fails_the_hostname(ca: tuple[trustme.CA, Path]) -> None:
    result = certificate_statuses(server_context(ca[0], "api.other.example"), ca[1])
    assert result.pop("LIVE-TLS-HOSTNAME") is Status.FAILED
    assert set(result.values()) == {Status.PASSED}, result


def test_a_chain_from_an_untrusted_ca_fails_the_chain(ca: tuple[trustme.CA, Path]) -> None:
    stranger = trustme.CA()
    result = certificate_statuses(server_context(stranger, "127.0.0.1"), ca[1])
    assert result.pop("LIVE-TLS-CHAIN") is Status.FAILED
    assert set(result.values()) == {Status.PASSED}, result


def test_plain_http_fails_every_tls_item() -> None:
    target = Target(base_url="http://127.0.0.1:9", provider="external", is_reference=False)
    result = statuses(run_checks(CheckContext(target=target), "tls.certificate"))
    assert set(result.values()) == {Status.FAILED}, result


def test_modern_only_server_passes_the_protocol_check(ca: tuple[trustme.CA, Path]) -> None:
    context = server_context(ca[0], "127.0.0.1")
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with tls_server(context) as port:
        result = statuses(run_checks(context_for(port, ca[1]), "tls.protocols"))
    assert result == {"LIVE-TLS-PROTOCOLS": Status.PASSED}


def test_a_server_accepting_tls_1_0_fails_the_protocol_check(ca: tuple[trustme.CA, Path]) -> None:
    context = server_context(ca[0], "127.0.0.1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:@SECLEVEL=0")
    with tls_server(context) as port:
        findings = run_checks(context_for(port, ca[1]), "tls.protocols")
    assert [f.status for f in findings] == [Status.FAILED], findings
    assert "TLSv1" in findings[0].message


@pytest.mark.parametrize(("make", "by", "fix"), [
    (lambda ca: server_context(ca, "api.other.example"), "LIVE-TLS-HOSTNAME", "--resolve"),
    (lambda ca: server_context(ca, "127.0.0.1", not_before=datetime.now(UTC) - timedelta(days=90),
                               not_after=datetime.now(UTC) - timedelta(days=1)),
     "LIVE-TLS-EXPIRY", "renew"),
    (lambda ca: server_context(trustme.CA(), "127.0.0.1"), "LIVE-TLS-CHAIN", "--ca-bundle"),
], ids=["hostname", "expired", "chain"])
def test_the_http_checks_are_blocked_by_the_certificate_fault_itself(
    ca: tuple[trustme.CA, Path], make: Any, by: str, fix: str,
) -> None:
    """The blocking item is the one the verification error names, with that cause's fix (F3)."""
    with tls_server(make(ca[0])) as port:
        findings = run_checks(context_for(port, ca[1]), "headers.security_headers")
    assert {f.status for f in findings} == {Status.BLOCKED}, findings
    assert {f.blocked_by for f in findings} == {by}
    assert all(fix in f.message for f in findings), findings[0].message
