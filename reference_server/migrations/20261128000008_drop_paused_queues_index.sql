-- queues_paused_idx (20261128000007) served a "<> ALL (paused queue ids)" form of the built-in
-- lease that the planner misestimated; the lease now checks each job's queue by primary key
-- (jobs.sql, lease_builtin), so no query reads the index.
DROP INDEX IF EXISTS queues_paused_idx;
