-- Every status change rewrites the job row (status is in index predicates, so never a HOT update),
-- and a non-HOT update adds an entry to every index of the table. Two indexes paid for that on
-- each lease and completion without serving a hot query:
-- * jobs_queue_status_idx (queue_id, status) served only queue statistics, queue deletion and
--   their like, which are rare and read the organisation's rows instead;
-- * jobs_lease_idx (lease_expires_at) WHERE status = 'processing' duplicated the set of rows in
--   jobs_worker_leases_idx; the reaper now scans that one (only leased rows are in it).
DROP INDEX IF EXISTS jobs_queue_status_idx;
DROP INDEX IF EXISTS jobs_lease_idx;
