-- What the benchmark reads of the reference server's database (its jobs table, read only).

-- name: queue_id
SELECT id FROM queues WHERE name = $1

-- name: unfinished_in_queue
-- Polled while a phase runs, so it must cost little: ready rows through jobs_ready_idx and leased
-- ones through jobs_worker_leases_idx (both partial), the queue's id a parameter so the planner
-- knows it. One status list over the three states matched neither index and scanned the whole
-- table (hundreds of thousands of rows by the built-in phase) four times a second, beside the work
-- being measured.
SELECT (SELECT count(*) FROM jobs WHERE queue_id = $1 AND status IN ('pending', 'scheduled'))
     + (SELECT count(*) FROM jobs WHERE status = 'processing' AND queue_id = $1)

-- name: worked_in_queue
-- Jobs succeeded, from the first lease to the last completion (the database's own clock).
SELECT count(*) AS succeeded,
       extract(epoch FROM max(completed_at) - min(started_at))::float8 AS seconds
FROM jobs
WHERE queue_id = (SELECT id FROM queues WHERE name = $1) AND status = 'succeeded'

-- name: start_latency_in_queue
-- Submit-to-start latency in milliseconds: created_at (the insert) to started_at (the lease).
SELECT count(*) AS started,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY ms) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY ms) AS p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99,
       max(ms) AS max
FROM (
    SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 AS ms
    FROM jobs
    WHERE queue_id = (SELECT id FROM queues WHERE name = $1) AND started_at IS NOT NULL
) AS s

-- name: seed_organization
INSERT INTO organizations (name) VALUES ('benchmarks') RETURNING id

-- name: seed_queue
INSERT INTO queues (organization_id, name) VALUES ($1, 'bench-sql') RETURNING id

-- name: seed_builtin_jobs
-- Built-in no-op jobs as a submit leaves them (the columns the engine's insert sets).
INSERT INTO jobs (organization_id, queue_id, queue_name, job_type, payload, status, max_attempts,
                  timeout_seconds)
SELECT $1, $2, 'bench-sql', 'test_job', '{}'::jsonb, 'pending', 3, 300
FROM generate_series(1, $3)
