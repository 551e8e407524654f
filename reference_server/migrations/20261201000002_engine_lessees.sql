-- The built-in pools of running server processes, each a lessee of jobs under its own id
-- (jobs.worker_id). While its process lives, the row is renewed every few seconds and the
-- process holds a session advisory lock on lock_key (on its LISTEN connection, which lives as
-- long as the process). A row whose lock is free and whose renewal is overdue belongs to a
-- process that is gone: any engine releases that row's leases at once, at its start-up and on
-- each reaper tick, instead of waiting for the leases to run out.
CREATE TABLE engine_lessees (
    id           UUID PRIMARY KEY,
    lock_key     BIGINT NOT NULL,
    hostname     TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
