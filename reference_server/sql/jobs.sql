-- Named queries of the job engine (reference_server/engine.py), loaded by reference_server/queries.py.
-- JSON parameters travel as text and are cast here, so the queries work whether or not the pool has
-- a JSON codec installed. asyncpg prepares each statement once per connection.

-- name: insert_job
-- One job; DO NOTHING on an idempotency-key hit (the caller then reads the existing job).
-- Every insert locks the queues it names FOR KEY SHARE, once per statement: jobs has no foreign
-- keys (migration 20261128000009), and this is the lock that keeps a concurrent queue deletion
-- from leaving orphans. Every insert also notifies for its pending jobs (no trigger does).
WITH q AS MATERIALIZED (
    SELECT id, organization_id, name, max_attempts, timeout_seconds FROM queues
    WHERE organization_id = $1 AND name = $2
    FOR KEY SHARE
)
INSERT INTO jobs (organization_id, queue_id, queue_name, job_type, payload, priority, status,
                  max_attempts, timeout_seconds, scheduled_for, idempotency_key)
SELECT q.organization_id, q.id, q.name, $3, $4::text::jsonb, $5,
       CASE WHEN $6::timestamptz > now() THEN 'scheduled' ELSE 'pending' END,
       coalesce($7::int, q.max_attempts), coalesce($8::int, q.timeout_seconds),
       coalesce($6::timestamptz, now()), $9::text
FROM q
ON CONFLICT (organization_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING *, CASE WHEN status = 'pending'
                  THEN pg_notify('taskforge_jobs', taskforge_wake_key(queue_id, job_type)) END
                 AS notified

-- name: insert_jobs
-- Many jobs of one organisation in one statement; items naming an unknown queue drop out of the
-- join, which the caller detects by the row count (and rolls back). Queues locked and pending
-- jobs notified as in insert_job.
WITH q AS MATERIALIZED (
    SELECT id, organization_id, name, max_attempts, timeout_seconds FROM queues
    WHERE organization_id = $1 AND name = ANY ($2::text[])
    FOR KEY SHARE
)
INSERT INTO jobs (organization_id, queue_id, queue_name, job_type, payload, priority, status,
                  max_attempts, timeout_seconds, scheduled_for)
SELECT q.organization_id, q.id, q.name, i.job_type, i.payload::jsonb, i.priority,
       CASE WHEN i.scheduled_for > now() THEN 'scheduled' ELSE 'pending' END,
       coalesce(i.max_attempts, q.max_attempts), coalesce(i.timeout_seconds, q.timeout_seconds),
       coalesce(i.scheduled_for, now())
FROM unnest($2::text[], $3::text[], $4::text[], $5::int2[], $6::int4[], $7::int4[],
            $8::timestamptz[]) WITH ORDINALITY
         AS i (queue_name, job_type, payload, priority, max_attempts, timeout_seconds,
               scheduled_for, ord)
JOIN q ON q.name = i.queue_name
ORDER BY i.ord
RETURNING id, seq, queue_name, job_type,
          CASE WHEN status = 'pending'
               THEN pg_notify('taskforge_jobs', taskforge_wake_key(queue_id, job_type)) END
              AS notified

-- name: lock_queues_for_batch
-- The queues a COPY batch names, with the defaults its rows take from them, locked FOR KEY SHARE
-- until the COPY commits (as insert_job locks them). The notifications for the jobs to come go
-- out with the commit: $3/$4 are the batch's distinct (queue name, job type) pairs.
SELECT q.id, q.name, q.max_attempts, q.timeout_seconds,
       (SELECT count(pg_notify('taskforge_jobs', taskforge_wake_key(q.id, t.job_type)))
        FROM unnest($3::text[], $4::text[]) AS t (queue_name, job_type)
        WHERE t.queue_name = q.name) AS notified
FROM queues q
WHERE q.organization_id = $1 AND q.name = ANY ($2::text[])
FOR KEY SHARE OF q

-- name: job_by_idempotency_key
SELECT * FROM jobs WHERE organization_id = $1 AND idempotency_key = $2

-- name: get_job
SELECT * FROM jobs WHERE organization_id = $1 AND id = $2

-- name: list_jobs
SELECT * FROM jobs
WHERE organization_id = $1
  AND ($2::text IS NULL OR queue_name = $2)
  AND ($3::text IS NULL OR status = $3)
  AND ($4::text IS NULL OR job_type = $4)
ORDER BY created_at DESC, seq DESC
LIMIT $5 OFFSET $6

-- name: count_jobs
SELECT count(*) FROM jobs
WHERE organization_id = $1
  AND ($2::text IS NULL OR queue_name = $2)
  AND ($3::text IS NULL OR status = $3)
  AND ($4::text IS NULL OR job_type = $4)

-- name: cancel_job
UPDATE jobs
SET status = 'cancelled', completed_at = now(), updated_at = now()
WHERE organization_id = $1 AND id = $2 AND status IN ('pending', 'scheduled')
RETURNING *

-- name: retry_job
-- A fresh start: attempts reset, due now, and lessees of its queue woken.
UPDATE jobs
SET status = 'pending', attempt_count = 0, scheduled_for = now(), worker_id = NULL,
    lease_expires_at = NULL, lease_seconds = NULL, started_at = NULL, completed_at = NULL,
    output = NULL, error_message = NULL, updated_at = now()
WHERE organization_id = $1 AND id = $2 AND status IN ('failed', 'dead')
RETURNING *, pg_notify('taskforge_jobs', taskforge_wake_key(queue_id, job_type)) AS notified

-- name: worker_queues
-- The queues a lessee waits on (paused ones too: resuming wakes it); no row for an unknown worker.
SELECT w.id,
       ARRAY(SELECT q.id FROM queues q
             WHERE q.organization_id = w.organization_id AND q.name = ANY (w.queues)) AS queue_ids
FROM workers w
WHERE w.organization_id = $1 AND w.id = $2 AND w.registered_by IS NOT DISTINCT FROM $3

-- name: lease_for_worker
-- The worker protocol's hot path in one round trip: the worker's unpaused queues, its free slots
-- (max_concurrent_jobs minus its leases), the head of each queue by an ordered scan of
-- jobs_ready_idx, the best of those heads. An unknown worker, or one registered by another
-- credential ($5), leases nothing (the caller then tells "not found" from "nothing ready"). Heads
-- locked but not taken are unlocked at commit.
WITH worker AS (
    SELECT w.queues,
           w.max_concurrent_jobs - (SELECT count(*) FROM jobs j
                                    WHERE j.worker_id = w.id AND j.status = 'processing')::int
               AS free_slots
    FROM workers w
    WHERE w.organization_id = $1 AND w.id = $2 AND w.registered_by IS NOT DISTINCT FROM $5
),
ready AS (
    SELECT q.id FROM queues q, worker
    WHERE q.organization_id = $1 AND q.name = ANY (worker.queues) AND NOT q.paused
),
picked AS (
    SELECT head.id
    FROM ready
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.seq FROM jobs j
        WHERE j.queue_id = ready.id AND j.status IN ('pending', 'scheduled')
          AND j.scheduled_for <= now()
        ORDER BY j.priority DESC, j.seq
        LIMIT $3
        FOR UPDATE SKIP LOCKED
    ) AS head
    ORDER BY head.priority DESC, head.seq
    LIMIT greatest(0, least($3::int, coalesce((SELECT free_slots FROM worker), 0)))
)
UPDATE jobs j
SET status = 'processing', worker_id = $2, attempt_count = j.attempt_count + 1,
    started_at = now(), lease_seconds = $4::int,
    lease_expires_at = now() + make_interval(secs => $4::int), updated_at = now()
FROM picked
WHERE j.id = picked.id
RETURNING j.*

-- name: begin_builtin_claim
-- Opens claim_builtin's transaction in the same round trip as BEGIN. enable_sort off makes the
-- ordered walks of jobs_builtin_ready_org_idx (each stops at its LIMIT) the claim's only sane
-- plan: on a table never analysed, or analysed before the built-in rows came, the planner estimated one ready row
-- and picked a bitmap scan and a sort of every ready row (30-40 ms per claim of 100 beside 20k
-- ready jobs, against 0.3 ms). SET LOCAL ends with the transaction; settle_builtin sorts nothing.
BEGIN; SET LOCAL enable_sort = off

-- name: claim_builtin
-- The built-in pool's one-transaction path, step 1: lock (not yet change) ready built-in jobs in
-- unpaused queues, organisations taking turns. The pool runs the instant ones before
-- settle_builtin in the same transaction; a crash or error meanwhile rolls back and leaves them
-- pending, as if never taken.
-- Fair share (one organisation's flood made another's echo wait 22 s behind it): the
-- organisations with ready built-in jobs are visited in id order from $4 (random per claim, so
-- none is always first), wrapping round, each by a skip-scan of jobs_builtin_ready_org_idx (one
-- index probe per organisation, however many jobs it has); each gives at most $2 jobs in its own
-- priority order; those in $3 (holding their share of the pool already) are passed over. So a
-- newcomer's job is in the next claim. Priority orders an organisation's own jobs, not
-- organisations against each other.
-- Each skip-scan orders by the whole index key: ordered by the organisation alone, the planner
-- took jobs_org_created_idx and filtered its way past every finished job of the organisation.
-- The paused check is a scalar subquery per row (a primary-key look-up of the job's queue), which
-- the planner cannot turn into a join: the walk of each organisation's index range stops at its
-- LIMIT (as NOT EXISTS it became an anti-join and a sort of every ready row).
WITH RECURSIVE from_start (org) AS (
    (SELECT j.organization_id FROM jobs j
     WHERE j.status IN ('pending', 'scheduled') AND j.job_type IN ('test_job', 'echo', 'sleep', 'fail') AND j.organization_id > $4::uuid
     ORDER BY j.organization_id, j.priority DESC, j.seq LIMIT 1)
    UNION ALL
    SELECT (SELECT j.organization_id FROM jobs j
            WHERE j.status IN ('pending', 'scheduled') AND j.job_type IN ('test_job', 'echo', 'sleep', 'fail') AND j.organization_id > f.org
            ORDER BY j.organization_id, j.priority DESC, j.seq LIMIT 1)
    FROM from_start f WHERE f.org IS NOT NULL
),
up_to_start (org) AS (
    (SELECT j.organization_id FROM jobs j
     WHERE j.status IN ('pending', 'scheduled') AND j.job_type IN ('test_job', 'echo', 'sleep', 'fail') AND j.organization_id <= $4::uuid
     ORDER BY j.organization_id, j.priority DESC, j.seq LIMIT 1)
    UNION ALL
    SELECT (SELECT j.organization_id FROM jobs j
            WHERE j.status IN ('pending', 'scheduled') AND j.job_type IN ('test_job', 'echo', 'sleep', 'fail') AND j.organization_id > u.org AND j.organization_id <= $4::uuid
            ORDER BY j.organization_id, j.priority DESC, j.seq LIMIT 1)
    FROM up_to_start u WHERE u.org IS NOT NULL
),
turns AS (
    SELECT org FROM from_start WHERE org IS NOT NULL
    UNION ALL
    SELECT org FROM up_to_start WHERE org IS NOT NULL
)
SELECT c.* FROM turns t CROSS JOIN LATERAL (
    SELECT j.id, j.organization_id, j.queue_name, j.job_type, j.payload, j.timeout_seconds,
           greatest(extract(epoch FROM now() - j.scheduled_for), 0)::float8 AS waited_seconds
    FROM jobs j
    WHERE j.organization_id = t.org
      AND j.status IN ('pending', 'scheduled') AND j.job_type IN ('test_job', 'echo', 'sleep', 'fail')
      AND j.scheduled_for <= now()
      AND NOT coalesce((SELECT q.paused FROM queues q WHERE q.id = j.queue_id), false)
    ORDER BY j.priority DESC, j.seq
    LIMIT $2
    FOR UPDATE OF j SKIP LOCKED
) c
WHERE t.org <> ALL ($3::uuid[])
LIMIT $1

-- name: settle_builtin
-- Step 2, same transaction: a job with an output ran already and goes straight to succeeded (one
-- row version instead of a lease and a completion, one commit instead of two); a NULL output
-- means "still to run" (sleep, or a failure to record): leased for $4 seconds, a short lease the
-- pool renews while the job runs (renew_builtin_leases), so a crashed server's jobs come back
-- soon (at once when its lessee row is found gone). started_at is the transaction's start, when
-- the jobs were taken.
UPDATE jobs j
SET status = CASE WHEN d.output IS NULL THEN 'processing' ELSE 'succeeded' END,
    worker_id = $3, attempt_count = j.attempt_count + 1, started_at = now(),
    lease_seconds = $4::int,
    lease_expires_at = CASE WHEN d.output IS NULL THEN now() + make_interval(secs => $4::int) END,
    output = d.output::jsonb,
    completed_at = CASE WHEN d.output IS NOT NULL THEN clock_timestamp() END,
    updated_at = clock_timestamp()
FROM unnest($1::uuid[], $2::text[]) AS d (id, output)
WHERE j.id = d.id

-- name: complete_job
UPDATE jobs
SET status = 'succeeded', output = $4::text::jsonb, completed_at = now(), lease_expires_at = NULL,
    updated_at = now()
WHERE organization_id = $1 AND id = $2 AND status = 'processing' AND worker_id = $3
RETURNING *

-- name: complete_jobs_grouped
-- Group commit of external workers' completions; a job comes back only when the claimed worker
-- holds its lease in the claimed organisation.
UPDATE jobs j
SET status = 'succeeded', output = d.output::jsonb, completed_at = now(), lease_expires_at = NULL,
    updated_at = now()
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[]) AS d (organization_id, id, worker_id, output)
WHERE j.id = d.id AND j.organization_id = d.organization_id AND j.status = 'processing'
  AND j.worker_id = d.worker_id
RETURNING j.*

-- name: complete_jobs
-- Group acknowledgement of the built-in pool; returns the ids still leased by it (and so completed).
UPDATE jobs j
SET status = 'succeeded', output = d.output::jsonb, completed_at = now(), lease_expires_at = NULL,
    updated_at = now()
FROM unnest($1::uuid[], $2::text[]) AS d (id, output)
WHERE j.id = d.id AND j.status = 'processing' AND j.worker_id = $3
RETURNING j.id

-- name: lock_job_for_failure
-- The job and its queue's retry settings, locked for the fail transition. $2 NULL: any organisation
-- (the built-in pool, which leased the job itself).
SELECT j.*, q.initial_retry_delay_seconds, q.max_retry_delay_seconds, q.backoff_multiplier
FROM jobs j
JOIN queues q ON q.id = j.queue_id
WHERE j.id = $1 AND ($2::uuid IS NULL OR j.organization_id = $2)
FOR UPDATE OF j

-- name: schedule_retry
UPDATE jobs
SET status = 'scheduled', scheduled_for = now() + make_interval(secs => $2), error_message = $3,
    worker_id = NULL, lease_expires_at = NULL, lease_seconds = NULL, updated_at = now()
WHERE id = $1
RETURNING *

-- name: mark_dead
UPDATE jobs
SET status = 'dead', error_message = $2, completed_at = now(), lease_expires_at = NULL,
    lease_seconds = NULL, updated_at = now()
WHERE id = $1
RETURNING *

-- name: release_jobs
-- Shutdown: leases handed back unfinished do not count as an attempt.
UPDATE jobs
SET status = 'pending', attempt_count = greatest(attempt_count - 1, 0), worker_id = NULL,
    lease_expires_at = NULL, lease_seconds = NULL, started_at = NULL, updated_at = now()
WHERE id = ANY ($1::uuid[]) AND status = 'processing' AND worker_id = $2
RETURNING id, taskforge_wake_key(queue_id, job_type) AS wake_key

-- name: reap_expired_leases
-- Leases that ran out: back to pending (the attempt counts) or dead when none are left; the
-- pending ones wake their lessees (NOTIFY sends once per distinct key, at commit).
WITH expired AS (
    SELECT id FROM jobs
    WHERE status = 'processing' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j
SET status = CASE WHEN j.attempt_count >= j.max_attempts THEN 'dead' ELSE 'pending' END,
    completed_at = CASE WHEN j.attempt_count >= j.max_attempts THEN now() END,
    error_message = 'lease expired', worker_id = NULL, lease_expires_at = NULL,
    lease_seconds = NULL, updated_at = now()
FROM expired
WHERE j.id = expired.id
RETURNING j.id, j.queue_name, j.job_type, j.status,
          CASE WHEN j.status = 'pending'
               THEN pg_notify('taskforge_jobs', taskforge_wake_key(j.queue_id, j.job_type)) END
              AS notified

-- name: promote_due_jobs
-- Scheduled jobs that fell due become pending, so waiting lessees can be woken for them.
WITH due AS (
    SELECT id FROM jobs
    WHERE status = 'scheduled' AND scheduled_for <= now()
    ORDER BY scheduled_for
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs j
SET status = 'pending', updated_at = now()
FROM due
WHERE j.id = due.id
RETURNING taskforge_wake_key(j.queue_id, j.job_type) AS wake_key

-- name: purge_expired_jobs
-- Retention: finished jobs older than their queue's retention_days leave the table. A sequential
-- scan, run rarely, rather than one more index written on every completion.
DELETE FROM jobs
WHERE id IN (
    SELECT j.id FROM jobs j
    JOIN queues q ON q.id = j.queue_id
    WHERE j.status IN ('succeeded', 'dead', 'cancelled')
      AND j.completed_at < now() - make_interval(days => q.retention_days)
    LIMIT $1
)

-- name: notify_wake
SELECT count(pg_notify('taskforge_jobs', k)) FROM (SELECT DISTINCT k FROM unnest($1::text[]) AS k) AS w

-- name: insert_queue
INSERT INTO queues (organization_id, name, description, priority, max_attempts, timeout_seconds,
                    initial_retry_delay_seconds, max_retry_delay_seconds, backoff_multiplier,
                    retention_days)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (organization_id, name) DO NOTHING
RETURNING *

-- name: get_queue
SELECT * FROM queues WHERE organization_id = $1 AND name = $2

-- name: lock_queue
SELECT * FROM queues WHERE organization_id = $1 AND name = $2 FOR UPDATE

-- name: list_queues
SELECT * FROM queues WHERE organization_id = $1 ORDER BY priority DESC, name

-- name: update_queue
UPDATE queues
SET description = $3, priority = $4, max_attempts = $5, timeout_seconds = $6,
    initial_retry_delay_seconds = $7, max_retry_delay_seconds = $8, backoff_multiplier = $9,
    retention_days = $10, updated_at = now()
WHERE organization_id = $1 AND name = $2
RETURNING *

-- name: set_queue_paused
UPDATE queues SET paused = $3, updated_at = now()
WHERE organization_id = $1 AND name = $2
RETURNING *

-- name: queue_has_unfinished_jobs
SELECT EXISTS (
    SELECT 1 FROM jobs
    WHERE queue_id = $1 AND status IN ('pending', 'scheduled', 'processing', 'failed')
)

-- name: delete_queue_jobs
DELETE FROM jobs WHERE queue_id = $1

-- name: delete_queue
DELETE FROM queues WHERE id = $1

-- name: queue_stats
-- One pass over the queue's jobs: no index keys a job's status (each such index would cost every
-- lease and completion one more entry), so each sub-count would be a scan of its own.
WITH s AS (
    SELECT status, count(*) AS n,
           min(scheduled_for) FILTER (WHERE status IN ('pending', 'scheduled')
                                        AND scheduled_for <= now()) AS oldest,
           count(*) FILTER (WHERE status = 'succeeded'
                              AND completed_at > now() - interval '1 minute') AS recent
    FROM jobs WHERE queue_id = $1
    GROUP BY status
)
SELECT (SELECT coalesce(jsonb_object_agg(status, n), '{}'::jsonb)::text FROM s) AS counts,
       (SELECT extract(epoch FROM now() - min(oldest))::float8 FROM s)
           AS oldest_pending_age_seconds,
       (SELECT coalesce(sum(recent), 0)::bigint FROM s) AS succeeded_last_minute

-- name: insert_worker
INSERT INTO workers (organization_id, name, queues, max_concurrent_jobs, heartbeat_interval_seconds,
                     registered_by)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING *, 0 AS active_jobs, now() AS observed_at

-- name: touch_worker
UPDATE workers SET last_heartbeat_at = now()
WHERE organization_id = $1 AND id = $2 AND registered_by IS NOT DISTINCT FROM $3
RETURNING *, now() AS observed_at

-- name: extend_leases
-- Heartbeat: every lease the worker holds runs again for its own length from now.
UPDATE jobs
SET lease_expires_at = now() + make_interval(secs => coalesce(lease_seconds, $3)), updated_at = now()
WHERE organization_id = $1 AND worker_id = $2 AND status = 'processing'

-- name: list_workers
SELECT w.*, now() AS observed_at,
       (SELECT count(*) FROM jobs j WHERE j.worker_id = w.id AND j.status = 'processing')::int
           AS active_jobs
FROM workers w
WHERE w.organization_id = $1
ORDER BY w.created_at, w.id

-- name: worker_owner
-- Who may act as this worker (immutable once registered, so the engine caches it).
SELECT organization_id, registered_by FROM workers WHERE id = $1

-- name: ack_jobs
-- A worker's batched acknowledgement, in one statement. Per result (ordinality n): succeeded, or
-- failed (scheduled again after backoff while retryable with attempts left, else dead). A result
-- is settled only when this worker ($2) holds the job's lease in this organisation ($1); the rest
-- come back unsettled with what the job is, if it exists in this organisation (status NULL: not
-- found). The backoff is backoff.py's: min(max, initial * multiplier^(attempt-1)) with +-10%
-- jitter (the draw in $8, from the caller) and a 1 s floor; a power that would overflow a double
-- is the max delay.
WITH d AS (
    SELECT * FROM unnest($3::uuid[], $4::bool[], $5::text[], $6::text[], $7::bool[], $8::float8[])
        WITH ORDINALITY AS d (id, succeeded, output, error_message, retryable, jitter, n)
),
target AS (
    SELECT j.id, d.succeeded, d.output, d.error_message,
           NOT d.succeeded AND d.retryable AND j.attempt_count < j.max_attempts AS retry,
           greatest(1.0, (CASE
               WHEN ln(q.backoff_multiplier) * greatest(j.attempt_count - 1, 0)
                    + ln(greatest(q.initial_retry_delay_seconds, 1.0)) > 700
               THEN q.max_retry_delay_seconds
               ELSE least(q.max_retry_delay_seconds, q.initial_retry_delay_seconds
                          * power(q.backoff_multiplier, greatest(j.attempt_count - 1, 0)))
           END) * (1 + 0.1 * d.jitter)) AS delay
    FROM d
    JOIN jobs j ON j.id = d.id
    JOIN queues q ON q.id = j.queue_id
    WHERE j.organization_id = $1 AND j.status = 'processing' AND j.worker_id = $2
    FOR UPDATE OF j
),
settled AS (
    UPDATE jobs j
    SET status = CASE WHEN t.succeeded THEN 'succeeded'
                      WHEN t.retry THEN 'scheduled' ELSE 'dead' END,
        output = CASE WHEN t.succeeded THEN t.output::jsonb ELSE j.output END,
        error_message = CASE WHEN t.succeeded THEN j.error_message ELSE t.error_message END,
        scheduled_for = CASE WHEN t.retry THEN now() + make_interval(secs => t.delay)
                             ELSE j.scheduled_for END,
        completed_at = CASE WHEN t.retry THEN j.completed_at ELSE now() END,
        worker_id = CASE WHEN t.retry THEN NULL ELSE j.worker_id END,
        lease_seconds = CASE WHEN t.succeeded THEN j.lease_seconds END,
        lease_expires_at = NULL, updated_at = now()
    FROM target t
    WHERE j.id = t.id
    RETURNING j.id, j.status, j.queue_name, j.job_type, j.started_at, j.completed_at, j.updated_at
)
SELECT d.n, d.id, s.status AS settled_status, s.queue_name, s.job_type, s.started_at,
       s.completed_at, s.updated_at,
       (SELECT j.status FROM jobs j WHERE j.id = d.id AND j.organization_id = $1) AS found_status
FROM d
LEFT JOIN settled s ON s.id = d.id
ORDER BY d.n

-- name: register_lessee
INSERT INTO engine_lessees (id, lock_key, hostname, pid) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET last_seen_at = now()

-- name: lock_lessee
-- On the process's LISTEN connection (a session lock: it ends with the connection). Waits only
-- while another engine checks whether this lessee is gone.
SELECT pg_advisory_lock($1)

-- name: drop_lessee
DELETE FROM engine_lessees WHERE id = $1

-- name: renew_builtin_leases
-- The built-in pool's heartbeat: its lessee row is seen now and every lease it holds runs for
-- $2 seconds more. A pool whose row is gone (judged gone while it could not renew: its leases
-- were released then) renews nothing and registers again.
WITH seen AS (
    UPDATE engine_lessees SET last_seen_at = now() WHERE id = $1 RETURNING id
),
renewed AS (
    UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $2::int)
    WHERE worker_id = $1 AND status = 'processing' AND EXISTS (SELECT 1 FROM seen)
    RETURNING 1
)
SELECT (SELECT count(*) FROM seen)::int AS registered, (SELECT count(*) FROM renewed)::int AS renewed

-- name: release_gone_lessees
-- Lessees whose process is gone: renewal overdue by $2 seconds and advisory lock free (taken
-- here until the commit, so two engines never release the same lessee). Their leases go back
-- to pending (the attempt counts, as for an expired lease) or dead when none are left.
WITH gone AS (
    SELECT id FROM engine_lessees
    WHERE id <> $1 AND last_seen_at < now() - make_interval(secs => $2::float8)
      AND pg_try_advisory_xact_lock(lock_key)
    FOR UPDATE SKIP LOCKED
),
dropped AS (
    DELETE FROM engine_lessees l USING gone WHERE l.id = gone.id RETURNING l.id
)
UPDATE jobs j
SET status = CASE WHEN j.attempt_count >= j.max_attempts THEN 'dead' ELSE 'pending' END,
    completed_at = CASE WHEN j.attempt_count >= j.max_attempts THEN now() END,
    error_message = 'lease holder gone', worker_id = NULL, lease_expires_at = NULL,
    lease_seconds = NULL, updated_at = now()
FROM dropped
WHERE j.worker_id = dropped.id AND j.status = 'processing'
RETURNING j.id, j.queue_name, j.job_type, j.status, taskforge_wake_key(j.queue_id, j.job_type) AS wake_key
