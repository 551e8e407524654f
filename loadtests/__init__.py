"""Locust load tests and sizing analysis for TaskForge deployments (HTTP only)."""

from __future__ import annotations
