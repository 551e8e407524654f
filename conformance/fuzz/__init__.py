"""Schemathesis fuzzing of a TaskForge deployment against the contract's OpenAPI document.

`python -m conformance.fuzz` (or `nox -s fuzz`) runs it; results land in reports/<run-id>/fuzz/.
"""

from __future__ import annotations

from conformance.fuzz.runner import CHECKS, PHASES, FuzzOptions, FuzzOutcome, run_fuzz

__all__ = ["CHECKS", "PHASES", "FuzzOptions", "FuzzOutcome", "run_fuzz"]
