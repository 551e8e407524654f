-- The leases a worker holds: read by heartbeats (extend them), lease calls (max_concurrent_jobs)
-- and the worker list (active jobs). Only processing rows enter it.
CREATE INDEX jobs_worker_leases_idx ON jobs (worker_id) WHERE status = 'processing';
