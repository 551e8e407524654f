"""The TaskForge conformance kit: the deployment guide's checklists as executable checks."""

from __future__ import annotations

__version__ = "0.1.0"
