-- The built-in pool claims organisation by organisation (fair share, sql/jobs.sql claim_builtin):
-- its ready index leads with the organisation, so that a skip-scan finds each organisation with
-- work in one probe and walks its jobs in priority order. It replaces the global-order index,
-- which nothing else reads (one index to maintain per built-in insert, as before).
CREATE INDEX jobs_builtin_ready_org_idx ON jobs (organization_id, priority DESC, seq)
    WHERE status IN ('pending', 'scheduled') AND job_type IN ('test_job', 'echo', 'sleep', 'fail');
DROP INDEX jobs_builtin_ready_idx;
