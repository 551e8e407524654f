"""Imports every check module so that their checks register themselves."""

from __future__ import annotations

import conformance.checks.live  # noqa: F401 - live checks against a running deployment
import conformance.checks.static.compose  # static checks of the compose file
import conformance.checks.static.dockerfile  # static checks of the Dockerfile
import conformance.checks.static.env  # static checks of the .env
import conformance.checks.static.nginx  # the NGINX configuration
import conformance.checks.static.prometheus  # Prometheus, Grafana provisioning
import conformance.checks.static.sizing  # connection sizing (guide 6.4)
