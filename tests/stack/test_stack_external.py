"""The external provider wraps the user's URLs and refuses malformed ones with one line."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from conformance.stack import StackConfigError, StackError, open_stack


def test_external_target_carries_the_given_urls(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    with open_stack("external", target_url="https://api.example.com/", ca_bundle=ca,
                    database_url="postgresql://u@db.example.com:5432/app",
                    redis_url="rediss://cache.example.com:6380/0") as target:
        assert target.base_url == "https://api.example.com"
        assert target.provider == "external"
        assert not target.is_reference
        assert target.ca_bundle == ca
        assert isinstance(target.verify, ssl.SSLContext)
        assert target.verify.get_ca_certs()[0]["issuer"]  # the given CA, and only it
        assert len(target.verify.get_ca_certs()) == 1
        assert target.database_url == "postgresql://u@db.example.com:5432/app"
        assert target.redis_url == "rediss://cache.example.com:6380/0"
        assert target.admin_email is None
        assert dict(target.env) == {}


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({}, "--target-url is required"),
        ({"target_url": "api.example.com"}, "--target-url: expected a https:// or http:// URL"),
        ({"target_url": "ftp://api.example.com"}, "got ftp://"),
        ({"target_url": "https://api.example.com:99999"}, "port is not a number"),
        ({"target_url": "https://api.example.com/?x=1"}, "without a query"),
        ({"target_url": "https://a.example.com", "database_url": "mysql://db/x"},
         "--database-url: expected a postgresql:// or postgres:// URL"),
        ({"target_url": "https://a.example.com", "redis_url": "http://cache"},
         "--redis-url: expected a redis:// or rediss:// URL"),
        ({"target_url": "https://a.example.com", "ca_bundle": "/nonexistent/ca.pem"},
         "--ca-bundle /nonexistent/ca.pem: no such file"),
        ({"target_url": "https://a.example.com", "server_env": {}}, "takes no option server_env"),
    ],
)
def test_malformed_external_options_fail_with_one_line(options: dict[str, object],
                                                        fragment: str) -> None:
    with pytest.raises(StackConfigError) as excinfo, open_stack("external", **options):
        pass
    message = str(excinfo.value)
    assert fragment in message
    assert "\n" not in message


def test_unknown_stack_kind_is_refused() -> None:
    with pytest.raises(StackError, match="unknown stack 'kubernetes'"), open_stack("kubernetes"):
        pass
