"""Helpers of the static-check tests: run the registered checks of one kind of artifact."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import trustme

from conformance.checks.all import registered_checks
from conformance.checks.registry import CheckContext
from conformance.model import Finding, Status

REPO = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).parent / "fixtures"
COMPOSE_DIR = REPO / "compose"

def run_checks(prefixes: tuple[str, ...], **context: object) -> list[Finding]:
    """Every finding of the registered checks whose items start with one of the prefixes."""
    ctx = CheckContext(**context)  # type: ignore[arg-type]
    findings: list[Finding] = []
    for spec in registered_checks():
        if any(item.startswith(prefixes) for item in spec.item_ids):
            findings += spec.run(ctx)
    return findings


def failing(findings: list[Finding]) -> set[str]:
    return {f.item_id for f in findings if f.status in (Status.FAILED, Status.ERROR)}


def install_certificate(ssl_dir: Path, *identities: str, **dates: datetime) -> None:
    """Write certificate.crt and private.key as guide 4.2 step 3 installs them (a test CA's)."""
    issued = trustme.CA().issue_cert(*identities, **dates)  # type: ignore[arg-type]
    ssl_dir.mkdir(parents=True, exist_ok=True)
    (ssl_dir / "certificate.crt").write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
    (ssl_dir / "private.key").write_bytes(issued.private_key_pem.bytes())
