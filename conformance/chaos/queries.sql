-- Queries of the chaos scenarios, by name (`-- name: <name>` starts one). Read-only on the jobs.

-- name: job_states
-- The status and attempt count of each given job id (ids absent from the table are lost).
SELECT id::text AS id, status::text AS status, attempt_count, output
FROM jobs WHERE id = ANY(%(ids)s::uuid[])

-- name: count_terminal
SELECT count(*) FROM jobs
WHERE id = ANY(%(ids)s::uuid[]) AND status IN ('succeeded', 'failed', 'dead', 'cancelled')

-- name: processing_ids
-- Jobs leased right now: those a crash may make run twice.
SELECT id::text FROM jobs WHERE status = 'processing'

-- name: existing_ids
SELECT id::text FROM jobs WHERE id = ANY(%(ids)s::uuid[])
