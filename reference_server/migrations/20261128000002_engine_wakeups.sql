-- Engine support: lease bookkeeping, LISTEN/NOTIFY wake-ups on insert, the built-in pool's ready index.

-- When the current lease began and how long it lasts, so heartbeats renew it by the same length
-- and the processing-time histogram needs no guess.
ALTER TABLE jobs ADD COLUMN started_at TIMESTAMPTZ, ADD COLUMN lease_seconds INTEGER;

-- The job types the server runs itself; kept in one place for the index, the trigger and the engine.
CREATE FUNCTION taskforge_is_builtin(job_type TEXT) RETURNS BOOLEAN
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN job_type IN ('test_job', 'echo', 'sleep', 'fail');

-- The notification payload: the queue id, and ':b' when a built-in runner could take the job,
-- so built-in runners wake only for their own kinds of work.
CREATE FUNCTION taskforge_wake_key(queue_id UUID, job_type TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN queue_id::text || CASE WHEN taskforge_is_builtin(job_type) THEN ':b' ELSE '' END;

-- The built-in pool serves every organisation; it reads only this partial index.
CREATE INDEX jobs_builtin_ready_idx ON jobs (priority DESC, seq)
    WHERE status IN ('pending', 'scheduled') AND job_type IN ('test_job', 'echo', 'sleep', 'fail');

-- One notification per queue and statement (not per row), whatever path inserted the jobs
-- (single submit, batch, COPY); PostgreSQL folds duplicates within a transaction.
CREATE FUNCTION taskforge_notify_inserted_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('taskforge_jobs', w.key)
    FROM (SELECT DISTINCT taskforge_wake_key(n.queue_id, n.job_type) AS key
          FROM inserted_jobs n WHERE n.status = 'pending') AS w;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify_insert
    AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS inserted_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION taskforge_notify_inserted_jobs();
