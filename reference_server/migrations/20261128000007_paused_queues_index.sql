-- The built-in pool's lease reads the set of paused queues once per statement (jobs.sql,
-- lease_builtin / claim_builtin): with this index that is a look at a few entries, not a scan of
-- every organisation's queues.
CREATE INDEX queues_paused_idx ON queues (id) WHERE paused;
