"""A throwaway certificate authority (trustme) and a server certificate for a reference stack."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The names a client uses to reach a reference stack: ports are published on the loopback only.
SERVER_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True, kw_only=True, slots=True)
class TlsFiles:
    """PEM files: the CA clients trust, the server's certificate chain and its private key."""

    ca_bundle: Path
    cert_file: Path
    key_file: Path


def issue(directory: Path, *, extra_names: tuple[str, ...] = ()) -> TlsFiles:
    """Make a CA and a server certificate for SERVER_NAMES (and extra_names) in `directory`.

    The files are world-readable on purpose: a container's non-root user reads them through a
    bind mount, and the key protects nothing beyond this one test run.
    """
    import trustme  # imported late: only reference stacks need it

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="TaskForge conformance kit (throwaway)")
    cert = ca.issue_cert(*SERVER_NAMES, *extra_names)
    files = TlsFiles(
        ca_bundle=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server.key",
    )
    ca.cert_pem.write_to_path(str(files.ca_bundle))
    cert.cert_chain_pems[0].write_to_path(str(files.cert_file))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(files.cert_file), append=True)
    cert.private_key_pem.write_to_path(str(files.key_file))
    directory.chmod(0o755)
    for path in (files.ca_bundle, files.cert_file, files.key_file):
        path.chmod(0o644)
    return files
