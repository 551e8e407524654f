"""Fault injection against the reference stack: crashes, outages, shutdowns, backups.

Each scenario runs over a `ChaosStack` it controls (PostgreSQL, Redis and server processes it may
kill), records every job that got a 2xx in a `Ledger`, and proves none of them was lost.
"""

from __future__ import annotations
