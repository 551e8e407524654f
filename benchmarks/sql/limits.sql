-- The raw PostgreSQL limits: the same kinds of rows and statements a job queue needs, no engine.

-- name: create_insert_table
CREATE TABLE IF NOT EXISTS bench_inserts (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_type   TEXT NOT NULL,
    payload    JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)

-- name: insert_one
INSERT INTO bench_inserts (job_type, payload) VALUES ($1, $2::text::jsonb)

-- name: create_copy_table
-- What a queue must keep per job, no more: an id, its queue and type, the payload, a status, and
-- the partial index a dequeue reads.
CREATE TABLE IF NOT EXISTS bench_copy (
    id         UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    queue_name TEXT NOT NULL,
    job_type   TEXT NOT NULL,
    payload    JSONB NOT NULL,
    priority   SMALLINT NOT NULL DEFAULT 0,
    status     TEXT NOT NULL DEFAULT 'pending',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS bench_copy_ready ON bench_copy (queue_name, priority DESC, seq)
    WHERE status = 'pending'

-- name: create_queue_table
-- A queue as small as it gets: a ready flag in a partial index, FIFO by a sequence.
CREATE TABLE IF NOT EXISTS bench_queue (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status      TEXT NOT NULL DEFAULT 'pending',
    payload     JSONB NOT NULL DEFAULT '{}',
    worker      INT,
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS bench_queue_ready ON bench_queue (id) WHERE status = 'pending'

-- name: fill_queue
INSERT INTO bench_queue (payload) SELECT '{}'::jsonb FROM generate_series(1, $1)

-- name: lease_batch
WITH picked AS (
    SELECT id FROM bench_queue WHERE status = 'pending' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
)
UPDATE bench_queue q SET status = 'processing', worker = $2, started_at = now()
FROM picked WHERE q.id = picked.id
RETURNING q.id, q.payload

-- name: complete_batch
UPDATE bench_queue SET status = 'succeeded', finished_at = now()
WHERE id = ANY($1::bigint[]) AND status = 'processing' AND worker = $2

-- name: count_left
SELECT count(*) FROM bench_queue WHERE status <> 'succeeded'
