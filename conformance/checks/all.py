"""Every check module, imported so that their checks register themselves, and the list of them.

The registry (`checks/registry.py`) is a leaf every check module imports; this module is the one
that knows them all, so asking for the checks never makes the registry depend on the tree.
"""

from __future__ import annotations

from collections.abc import Iterator

import conformance.checks.chaos  # chaos items, judged from a chaos run's chaos.json
import conformance.checks.fuzz  # API-FUZZ items, judged from a fuzz run's fuzz-results.json
import conformance.checks.host  # host checks through testinfra (importing registers them)
import conformance.checks.live  # live checks against a running deployment
import conformance.checks.load  # noqa: F401 - load items, judged from a load verdict.json
from conformance.checks.registry import REGISTRY, CheckSpec

# Static checks of deployment artifacts (.env, compose, Dockerfile, NGINX, Prometheus, sizing).
from conformance.checks.static import (  # noqa: F401
    backup,
    compose,
    dockerfile,
    env,
    extensions,
    logfile,
    nginx,
    nginxload,
    procedures,
    prometheus,
    sizing,
)


def registered_checks() -> Iterator[CheckSpec]:
    """All checks, each module imported above having registered its own."""
    yield from REGISTRY.values()
