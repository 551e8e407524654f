"""Fault injection against the reference stack: crashes, outages, shutdowns, backups.

Each scenario runs over a `ChaosStack` it controls (PostgreSQL, Redis and server processes it may
kill), records every job that got a 2xx in a `Ledger`, and proves none of them was lost.
"""

from __future__ import annotations

#: Scenario name -> its catalogue item (conformance/catalogue/chaos.yaml), in running order.
SCENARIO_IDS: dict[str, str] = {
    "process-crash": "CHAOS-PROCESS-CRASH",
    "worker-death": "CHAOS-WORKER-DEATH",
    "database-outage": "CHAOS-DATABASE-OUTAGE",
    "redis-outage": "CHAOS-REDIS-OUTAGE",
    "graceful-shutdown": "CHAOS-GRACEFUL-SHUTDOWN",
    "log-unwritable": "CHAOS-LOG-UNWRITABLE",
    "backup-restore": "CHAOS-BACKUP-RESTORE",
    "database-crash": "CHAOS-DATABASE-CRASH",
    "database-hang": "CHAOS-DATABASE-HANG",
    "submit-retry": "CHAOS-SUBMIT-RETRY",
    "pool-burst": "CHAOS-POOL-BURST",
}
