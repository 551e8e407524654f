"""No file a run writes under reports/ holds a credential it was given or received.

Each command runs for real (quick sizes) with credentials of its own, and every file it wrote is
grepped for them, for the reference server's JWTs and API keys, and for their base64 forms.
The chaos and benchmark runs are grepped in their own modules, beside the one run each makes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from leak_support import leaks

import conformance.fuzz.runner as fuzz_runner
from conformance.cli import main as conformance_main
from conformance.fuzz import FuzzOptions
from conformance.fuzz.runner import FuzzTarget, fuzz_target
from conformance.reporting.redact import MASK, mask_argv
from conformance.stack import open_stack

PASSWORD = "pw-Secr3t-Value-91"
TOKEN = "tok-Secr3t-Value-92"
API_KEY = "tf_GivenKeyValue0000000000000093"
DB_PASSWORD = "DbPassw0rd-94"

LOAD_PROFILE = """
[profiles.tiny]
description = "a few seconds for the tests"
server = { WORKERS = 1, POOL_SIZE = 5, MAX_CONNECTIONS = 100 }
mix = { submitter = 2, poller = 1, worker = 1, health = 1 }
stages = [ { until = 4, users = 3, spawn_rate = 3 } ]
[profiles.tiny.thresholds]
error_rate = 1.0
"""


def recorded(monkeypatch: pytest.MonkeyPatch, owner: object, name: str,
             secret_of: Callable[[Any], str]) -> list[str]:
    """Wrap `owner.name` so that the credential each call hands out is recorded."""
    seen: list[str] = []
    original = getattr(owner, name)

    def wrapper(*args: object, **kwargs: object) -> Any:
        result = original(*args, **kwargs)
        seen.append(secret_of(result))
        return result

    monkeypatch.setattr(owner, name, wrapper)
    return seen


def test_command_line_credentials_are_masked_and_the_rest_kept() -> None:
    argv = ["run", "--password", PASSWORD, f"--api-key={API_KEY}", "--token", TOKEN,
            "--jwt-secret", "s3", "--database-url", f"postgresql://u:{DB_PASSWORD}@db/x",
            "--target-url", "https://example.test", "--phase", "static"]
    assert mask_argv(argv) == [
        "run", "--password", MASK, f"--api-key={MASK}", "--token", MASK, "--jwt-secret", MASK,
        "--database-url", f"postgresql://u:{MASK}@db/x", "--target-url", "https://example.test",
        "--phase", "static"]


def test_conformance_run_writes_no_given_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = tmp_path / "reports"
    argv = ["run", "--phase", "static", "--password", PASSWORD, "--token", TOKEN,
            "--api-key", API_KEY, "--database-url", f"postgresql://u:{DB_PASSWORD}@127.0.0.1:1/x",
            "--reports-dir", str(reports)]
    # The timing record quotes the process's own command line.
    monkeypatch.setattr(sys, "argv", ["conformance", *argv])
    assert conformance_main(argv) == 0
    timing = reports / "conformance-timing.json"
    assert "--password ***" in json.loads(timing.read_text())["command"]
    assert leaks(reports, [PASSWORD, TOKEN, API_KEY, DB_PASSWORD]) == []


@pytest.mark.slow
def test_live_conformance_run_writes_no_credential_it_received(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the reference stack: its admin's password, and the tokens and keys its checks got."""
    import conformance.stack.embedded as embedded

    passwords = recorded(monkeypatch, embedded, "register_admin", lambda pair: pair[1])
    reports = tmp_path / "reports"
    argv = ["run", "--stack", "embedded", "--phase", "post-deploy", "--reports-dir", str(reports)]
    monkeypatch.setattr(sys, "argv", ["conformance", *argv])
    assert conformance_main(argv) in (0, 1)
    assert passwords, "the reference stack registered no admin"
    assert list(reports.glob("*/results.json"))
    assert leaks(reports, passwords) == []


@pytest.mark.slow
def test_fuzz_run_writes_no_credential_it_used_or_received(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fuzzer's own login, and the API keys and tokens its requests were answered with."""
    used = recorded(monkeypatch, fuzz_runner, "register_and_login",
                    lambda auth: auth.value.removeprefix("Bearer "))
    with open_stack("embedded") as target:
        run_dir = tmp_path / "reports" / "fuzz-run" / "fuzz"
        options = FuzzOptions(max_examples=2, phases=("examples", "coverage"),
                              extra_args=("--include-path-regex", "^/api/v1/(auth|api-keys)"))
        fuzz_target(options, FuzzTarget(base_url=target.base_url, is_reference=True,
                                        provider=target.provider, ca_bundle=target.ca_bundle),
                    run_dir)
    assert used, "the fuzzer did not log in"
    # The run did receive credentials: created API keys and token pairs were answered.
    assert "/api/v1/api-keys" in (run_dir / "cassette.yaml").read_text()
    assert leaks(tmp_path / "reports", used) == []


@pytest.mark.slow
def test_load_run_writes_no_credential_it_was_given(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(LOAD_PROFILE)
    with open_stack("embedded") as target:
        assert target.ca_bundle is not None and target.database_url is not None
        verify = target.verify
        with httpx.Client(base_url=target.base_url, verify=verify, timeout=10) as http:
            token = http.post("/api/v1/auth/login", json={
                "email": target.admin_email, "password": target.admin_password,
            }).json()["data"]["access_token"]
            key = http.post("/api/v1/api-keys", headers={"Authorization": f"Bearer {token}"},
                            json={"name": "load", "permissions": ["job:read", "job:write",
                                                                  "queue:read", "worker:read",
                                                                  "worker:write"]},
                            ).json()["data"]["key"]
        # Embedded PostgreSQL trusts local connections: any password is accepted, and recorded.
        database_url = target.database_url.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1)
        done = subprocess.run(
            [sys.executable, "-m", "loadtests", "--profile", "tiny", "--profiles-file",
             str(profiles), "--target-url", target.base_url, "--api-key", key, "--allow-load",
             "--ca-bundle", str(target.ca_bundle), "--database-url", database_url,
             "--processes", "1", "--max-seconds", "4", "--reports-dir", str(tmp_path / "reports")],
            capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert list((tmp_path / "reports").glob("*/load/verdict.json"))
    assert leaks(tmp_path / "reports", [key, token, DB_PASSWORD, str(target.admin_password)]) == []
