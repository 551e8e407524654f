"""Imports every check module so that their checks register themselves."""

from __future__ import annotations

import conformance.checks.chaos  # chaos items, judged from a chaos run's chaos.json
import conformance.checks.host  # host checks through testinfra (importing registers them)
import conformance.checks.live  # live checks against a running deployment
import conformance.checks.load  # noqa: F401 - load items, judged from a load verdict.json

# Static checks of deployment artifacts (.env, compose, Dockerfile, NGINX, Prometheus, sizing).
from conformance.checks.static import (  # noqa: F401
    compose,
    dockerfile,
    env,
    nginx,
    prometheus,
    sizing,
)
