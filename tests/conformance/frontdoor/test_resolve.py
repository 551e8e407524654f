"""--resolve HOST:PORT:ADDRESS for every HTTP client of the kit, against a real TLS server.

The server's certificate names a domain only (no IP address): a request to the domain reaches
127.0.0.1 through the mapping and verifies against the name; without the mapping the name does
not resolve; a mapping for another name is refused by certificate verification.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from conformance.checks.live.http import LiveClient, make_client
from conformance.resolve import ResolveSpecError, describe, parse_resolve, resolve_map, transport
from conformance.stack import Target

DOMAIN = "api.frontdoor.test"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"host={self.headers.get('Host')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    directory = tmp_path_factory.mktemp("resolve-tls")
    ca = trustme.CA()
    cert = ca.issue_cert(DOMAIN)  # the name only: a connection by address cannot verify
    ca_file = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], ca_file
    httpd.shutdown()
    httpd.server_close()


def test_a_mapped_name_reaches_the_address_and_verifies_against_the_name(
    server: tuple[int, Path],
) -> None:
    port, ca_file = server
    target = Target(base_url=f"https://{DOMAIN}:{port}", provider="external",
                    is_reference=False, ca_bundle=ca_file,
                    resolve=(f"{DOMAIN}:{port}:127.0.0.1",))
    with make_client(target) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.text == f"host={DOMAIN}:{port}"  # the Host header keeps the name
    assert str(response.request.url) == f"https://{DOMAIN}:{port}/health"
    with LiveClient(target) as live:
        curl = live.curl(live.get("/health").request)
    assert curl.startswith(f"curl --resolve {DOMAIN}:{port}:127.0.0.1 ")


def test_without_the_mapping_the_name_does_not_resolve(server: tuple[int, Path]) -> None:
    port, ca_file = server
    target = Target(base_url=f"https://{DOMAIN}:{port}", provider="external",
                    is_reference=False, ca_bundle=ca_file)
    with make_client(target) as client, pytest.raises(httpx.ConnectError):
        client.get("/health")


def test_a_certificate_for_another_name_is_refused(server: tuple[int, Path]) -> None:
    port, ca_file = server
    other = "other.frontdoor.test"
    mapping = resolve_map([f"{other}:{port}:127.0.0.1"])
    with httpx.Client(transport=transport(mapping, verify=ssl.create_default_context(
            cafile=str(ca_file)))) as client, pytest.raises(httpx.ConnectError,
                                                             match="CERTIFICATE_VERIFY_FAILED"):
        client.get(f"https://{other}:{port}/health")


def test_another_port_of_the_name_is_not_mapped(server: tuple[int, Path]) -> None:
    port, _ = server
    mapping = resolve_map([f"{DOMAIN}:{port}:127.0.0.1"])
    assert describe(f"https://{DOMAIN}:{port}/x", mapping) == f"--resolve {DOMAIN}:{port}:127.0.0.1"
    assert describe(f"https://{DOMAIN}/x", mapping) == ""


@pytest.mark.parametrize("spec", ["api.test", "api.test:443", "api.test:http:127.0.0.1",
                                  "api.test:70000:127.0.0.1", "api.test:443:not-an-ip",
                                  ":443:127.0.0.1"])
def test_malformed_specs_are_refused_in_one_line(spec: str) -> None:
    with pytest.raises(ResolveSpecError) as excinfo:
        parse_resolve(spec)
    assert "\n" not in str(excinfo.value) and "--resolve" in str(excinfo.value)


def test_ipv6_addresses_in_brackets() -> None:
    assert parse_resolve("API.test:443:[::1]") == ("api.test", 443, "::1")
