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

-- name: jobs_by_idempotency_prefix
-- The jobs a submit-retry run made, by idempotency key (one each, or the promise is broken).
SELECT idempotency_key, id::text FROM jobs WHERE idempotency_key LIKE %(prefix)s

-- name: burst_batches
-- How many jobs of each burst batch were written (all of them, or none).
SELECT (payload->>'n')::int AS n, count(*) FROM jobs
WHERE payload->>'chaos' = 'pool-burst' AND payload->>'run' = %(run)s
GROUP BY 1
