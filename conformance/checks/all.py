"""Imports every check module so that their checks register themselves."""

from __future__ import annotations

import conformance.checks.live  # noqa: F401 - live checks against a running deployment
