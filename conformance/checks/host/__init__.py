"""Host checks: the server a deployment runs on, through pytest-testinfra backends.

Local by default (`local://`), any testinfra spec with `--hosts` (e.g. `ssh://user@server`). Each
check speaks for every host given; an item takes the worst status across hosts.
"""

from __future__ import annotations

from conformance.checks.host import (  # noqa: F401 - importing registers the checks
    layout,
    resources,
    security,
    system,
)
