"""Imports every check module so that their checks register themselves."""

from __future__ import annotations
