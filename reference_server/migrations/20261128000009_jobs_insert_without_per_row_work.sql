-- Inserting a job did work per row that a queue of thousands of inserts per second pays dearly for.
--
-- 1. Foreign keys. jobs.queue_id -> queues and jobs.organization_id -> organizations each ran an
--    RI trigger per inserted row (a query locking the parent FOR KEY SHARE). The insert paths now
--    lock each queue they name once per statement, FOR KEY SHARE (jobs.sql: insert_job,
--    insert_jobs, insert_jobs_grouped, lock_queues_for_batch), which is the lock the RI check
--    took; queue deletion locks the queue FOR UPDATE and deletes its jobs first, so a submit
--    racing a deletion either lands before it (the deletion then sees the jobs) or finds no queue.
--    The organisation of a job is always its queue's, and queues keep their foreign key to
--    organisations. Nothing deletes an organisation; a path that does must delete its jobs first.
-- 2. The AFTER INSERT trigger with a transition table kept every inserted row in a tuplestore to
--    send one notification per queue; the insert statements notify for themselves now (pending
--    jobs only, as the trigger did), in the same transaction.
-- 3. Random (version 4) ids put every new row's primary-key entry on a random page of the index
--    (and a full-page image in the WAL after each checkpoint). Ids are now time-ordered
--    (version 7 layout: 48 bits of Unix milliseconds, then random bits), so new entries land at
--    the index's right edge. The engine makes them itself for COPY; this default serves INSERTs.
ALTER TABLE jobs
    DROP CONSTRAINT IF EXISTS jobs_organization_id_fkey,
    DROP CONSTRAINT IF EXISTS jobs_queue_id_fkey;

DROP TRIGGER IF EXISTS jobs_notify_insert ON jobs;
DROP FUNCTION IF EXISTS taskforge_notify_inserted_jobs();

-- gen_random_uuid() with its first 48 bits replaced by the time and its version nibble set to 7
-- (bits 52 and 53 turn version 4, 0100, into 0111).
CREATE FUNCTION taskforge_uuidv7() RETURNS UUID
    LANGUAGE sql VOLATILE PARALLEL SAFE
    RETURN encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)
                                      FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid;

ALTER TABLE jobs ALTER COLUMN id SET DEFAULT taskforge_uuidv7();
