"""OPS-DOMAIN-DNS: BASE_URL's host looked up with the system resolver, compared with the target.
Only loopback and names that never resolve (RFC 6761 .invalid) are used."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.checks.live.dns import domain_points_at_target
from conformance.checks.registry import CheckContext
from conformance.model import Status
from conformance.stack import Target


def judge(tmp_path: Path, base_url: str, target_url: str,
          resolve: tuple[str, ...] = (), reference: bool = False) -> tuple[Status, str]:
    env = tmp_path / ".env"
    env.write_text(f"BASE_URL={base_url}\n")
    target = Target(base_url=target_url, provider="external", is_reference=reference,
                    resolve=resolve)
    (finding,) = domain_points_at_target(CheckContext(env_file=env, target=target))
    return finding.status, finding.message


def test_name_that_resolves_to_the_target_passes(tmp_path: Path) -> None:
    status, message = judge(tmp_path, "https://localhost:8443", "https://127.0.0.1:8443")
    assert status is Status.PASSED, message
    assert "127.0.0.1" in message


def test_name_that_does_not_resolve_fails(tmp_path: Path) -> None:
    status, message = judge(tmp_path, "https://api.taskforge-check.invalid",
                            "https://127.0.0.1:8443")
    assert status is Status.FAILED
    assert message.startswith("api.taskforge-check.invalid (BASE_URL) does not resolve")


@pytest.mark.parametrize(
    ("base_url", "target_url", "resolve", "words"),
    [
        ("https://api.example.com", "https://127.0.0.1:8443", ("api.example.com:8443:127.0.0.1",),
         "does not use DNS"),
        ("https://api.example.com", "https://staging.internal", (), "give --target-url"),
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443", (), "names no domain"),
    ],
)
def test_runs_that_do_not_use_dns_are_not_judged(
    tmp_path: Path, base_url: str, target_url: str, resolve: tuple[str, ...], words: str
) -> None:
    status, message = judge(tmp_path, base_url, target_url, resolve)
    assert status is Status.NOT_APPLICABLE and words in message


def test_the_reference_stack_is_not_looked_up(tmp_path: Path) -> None:
    """Its BASE_URL is the example's domain: no DNS query leaves the machine for it."""
    status, message = judge(tmp_path, "https://api.example.com", "https://127.0.0.1:8443",
                            reference=True)
    assert status is Status.NOT_APPLICABLE and "reference stack" in message
