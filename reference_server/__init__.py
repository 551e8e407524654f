"""The TaskForge job service: a reference implementation on Quart, asyncpg and Redis."""

from __future__ import annotations

__version__ = "0.1.0"
