"""A small made-up registry and catalogue for the plugin and command-line tests.

Loaded with `-p fakesuite`; answers the plugin's hooks before the real registry does.
`FAKE_FAIL=1` in the environment makes the blocker check fail, `FAKE_CRASH=1` crash, and
`FAKE_INTERRUPT=1` raise KeyboardInterrupt as Ctrl-C would, `FAKE_EXIT=1` kill its process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from conformance.checks.registry import CheckContext, CheckSpec, failed, passed
from conformance.model import CatalogueEntry, Evidence, Finding, Kind, Phase, Severity


def entry(item_id: str, phase: Phase, severity: Severity,
          kind: Kind = Kind.AUTOMATED) -> CatalogueEntry:
    return CatalogueEntry(
        id=item_id, section="6.1", guide_text="Firewall dikonfigurasi dengan benar",
        title=f"title of {item_id}", phase=phase, severity=severity, kind=kind,
        rationale="because", remediation="fix it",
        attestation="a signed change ticket" if kind is Kind.ATTESTED else None,
    )


ENTRIES = [
    entry("FAKE-STATIC-OK", Phase.STATIC, Severity.MAJOR),
    entry("FAKE-STATIC-BLOCKER", Phase.STATIC, Severity.BLOCKER),
    entry("FAKE-LIVE-MINOR", Phase.POST_DEPLOY, Severity.MINOR),
    entry("FAKE-ENV-FILE", Phase.STATIC, Severity.MAJOR),
    entry("FAKE-ATTESTED", Phase.PRE_DEPLOY, Severity.BLOCKER, Kind.ATTESTED),
]


def static_ok(context: CheckContext) -> Iterator[Finding]:
    yield passed("FAKE-STATIC-OK", "fake.static_ok",
                 f"fine run={context.run_id} cors={context.cors_origin}")


def static_blocker(context: CheckContext) -> Iterator[Finding]:
    if os.environ.get("FAKE_EXIT") == "1":
        os._exit(1)  # the process dies under the check, as an OOM kill would
    if os.environ.get("FAKE_INTERRUPT") == "1":
        raise KeyboardInterrupt  # what Ctrl-C does in the middle of a check
    if os.environ.get("FAKE_CRASH") == "1":
        raise RuntimeError("boom")
    if os.environ.get("FAKE_FAIL") == "1":
        yield failed("FAKE-STATIC-BLOCKER", "fake.static_blocker", "the blocker is broken",
                     Evidence(kind="file", file="fake.env", line=3),
                     expected="on", actual="off")
    else:
        yield passed("FAKE-STATIC-BLOCKER", "fake.static_blocker")


def live_minor(context: CheckContext) -> Iterator[Finding]:
    yield passed("FAKE-LIVE-MINOR", "fake.live_minor", f"writes allowed: {context.allow_writes}")


def env_file(context: CheckContext) -> Iterator[Finding]:
    assert context.env_file is not None
    yield passed("FAKE-ENV-FILE", "fake.env_file", f"read {context.env_file.name}")


CHECKS = [
    CheckSpec(name="fake.static_ok", item_ids=("FAKE-STATIC-OK",), needs=frozenset(),
              function=static_ok),
    CheckSpec(name="fake.static_blocker", item_ids=("FAKE-STATIC-BLOCKER",), needs=frozenset(),
              function=static_blocker),
    CheckSpec(name="fake.live_minor", item_ids=("FAKE-LIVE-MINOR",), needs=frozenset({"target"}),
              function=live_minor),
    CheckSpec(name="fake.env_file", item_ids=("FAKE-ENV-FILE",), needs=frozenset({"env_file"}),
              function=env_file),
]


@pytest.hookimpl(tryfirst=True)
def pytest_taskforge_checks(config: pytest.Config) -> list[CheckSpec]:
    return CHECKS


@pytest.hookimpl(tryfirst=True)
def pytest_taskforge_catalogue(config: pytest.Config) -> list[CatalogueEntry]:
    return ENTRIES
