"""`python -m conformance.chaos`: see conformance.chaos.cli."""

from __future__ import annotations

from conformance.chaos.cli import main

raise SystemExit(main())
