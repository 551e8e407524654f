"""Fixtures of the live-check tests: a throwaway CA and a factory of reference servers."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import trustme
from live_support import LiveServer, ServerFactory, serve

from reference_server.devservices import EmbeddedPostgres, EmbeddedRedis


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA bundle, certificate chain, key) for 127.0.0.1 and localhost, from a throwaway CA."""
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path, chain_path, key_path = (directory / n for n in ("ca.pem", "chain.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_path))
    cert.private_key_pem.write_to_path(str(key_path))
    for blob in cert.cert_chain_pems:
        blob.write_to_path(str(chain_path), append=True)
    return ca_path, chain_path, key_path


@pytest.fixture(scope="module")
def server_factory(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: EmbeddedPostgres,
    redis_server: EmbeddedRedis,
    tls_files: tuple[Path, Path, Path],
) -> ServerFactory:
    directory = tmp_path_factory.mktemp("live")

    def factory(**overrides: str) -> contextlib.AbstractContextManager[LiveServer]:
        return serve(directory, postgres_server, redis_server, tls_files, **overrides)

    return factory


