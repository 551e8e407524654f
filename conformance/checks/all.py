"""Imports every check module so that their checks register themselves."""

from __future__ import annotations

import conformance.checks.host  # noqa: F401 - host checks through testinfra
import conformance.checks.live  # noqa: F401 - live checks against a running deployment

# Static checks of deployment artifacts (.env, compose, Dockerfile, NGINX, Prometheus, sizing).
from conformance.checks.static import (  # noqa: F401
    compose,
    dockerfile,
    env,
    nginx,
    prometheus,
    sizing,
)
