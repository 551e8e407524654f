"""Live checks: a running deployment probed over HTTPS, SQL, Redis, its logs and its backups.

Each module covers one concept; importing the package registers every check (see `checks.all`).
"""

from __future__ import annotations

from conformance.checks.live import (  # noqa: F401 - importing registers the checks
    auth,
    backup,
    backup_service,
    containers,
    cors,
    database,
    dns,
    frontdoor,
    headers,
    health,
    hygiene,
    jobs,
    logs,
    metrics,
    observability,
    ratelimit,
    redis,
    resilience,
    tenancy,
    tls,
)
