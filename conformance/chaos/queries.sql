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

-- name: retry_jobs
-- The jobs a submit-retry run made, by the payload's n (one each, or the promise is broken):
-- counted by payload rather than by key, so a server that ignores the key is caught too.
SELECT (payload->>'n')::int AS n, id::text, idempotency_key FROM jobs
WHERE payload->>'chaos' = 'submit-retry' AND payload->>'run' = %(run)s

-- name: burst_jobs
-- Each job a pool-burst run wrote, with how many 2xx audit rows name it (one, or it is
-- half-written: a job without the audit row its transaction should have committed).
WITH ours AS (
    SELECT (payload->>'n')::int AS n, id::text AS id FROM jobs
    WHERE payload->>'chaos' = 'pool-burst' AND payload->>'run' = %(run)s
)
SELECT ours.n, ours.id, count(a.id) AS audit_rows
FROM ours LEFT JOIN audit_log a ON a.target = ours.id AND a.status_code BETWEEN 200 AND 299
GROUP BY ours.n, ours.id
