"""A one-check registry whose check writes the CheckContext it was given to $DUMP_CONTEXT_DIR.

Loaded with `-p dumpsuite`; each pytest process (the runner or an xdist worker) writes one file,
so a test can see what every process was handed.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conformance.checks.registry import CheckContext, CheckSpec, passed
from conformance.model import CatalogueEntry, Finding, Kind, Phase, Severity

ENTRIES = [
    CatalogueEntry(id=f"DUMP-{n}", section="6.1", guide_text="-", title=f"dump {n}",
                   phase=Phase.POST_DEPLOY, severity=Severity.MINOR, kind=Kind.AUTOMATED,
                   rationale="-", remediation="-")
    for n in range(2)
]


def dumper(item_id: str) -> Callable[[CheckContext], Iterator[Finding]]:
    def dump(context: CheckContext) -> Iterator[Finding]:
        fields = {f.name: getattr(context, f.name) for f in dataclasses.fields(context)}
        fields["target"] = None if context.target is None else context.target.base_url
        out = Path(os.environ["DUMP_CONTEXT_DIR"]) / f"{os.getpid()}-{item_id}.json"
        out.write_text(json.dumps(fields, default=str), encoding="utf-8")
        yield passed(item_id, f"dump.{item_id}")

    return dump


# Two checks, so that with two xdist workers each worker is likely to run one.
CHECKS = [CheckSpec(name=f"dump.{e.id}", item_ids=(e.id,), needs=frozenset({"target"}),
                    function=dumper(e.id)) for e in ENTRIES]


@pytest.hookimpl(tryfirst=True)
def pytest_taskforge_checks(config: pytest.Config) -> list[CheckSpec]:
    return CHECKS


@pytest.hookimpl(tryfirst=True)
def pytest_taskforge_catalogue(config: pytest.Config) -> list[CatalogueEntry]:
    return ENTRIES
