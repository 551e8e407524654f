"""`python -m conformance.fuzz`: see conformance.fuzz.cli."""

from __future__ import annotations

from conformance.fuzz.cli import main

raise SystemExit(main())
