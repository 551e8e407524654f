-- The group commit of single submits (reference_server/group_commit.py submit_writer).

-- name: insert_jobs_with_audit
-- Concurrent single submits of any organisations, and the audit row of each that asks for one, in
-- one statement and so one transaction: no job without its row, one round trip, one commit. The
-- items travel as one JSON array ($1): asyncpg encodes array parameters element by element, which
-- cost more than the insert. Items naming an unknown queue drop out of the join (the caller tells
-- them by their missing id); queues are locked FOR KEY SHARE and pending jobs notified, as
-- insert_job in jobs.sql does.
WITH i AS MATERIALIZED (
    SELECT taskforge_uuidv7() AS id, i.*
    FROM jsonb_to_recordset($1::text::jsonb)
             AS i (n int, organization_id uuid, queue_name text, job_type text, payload jsonb,
                   priority int2, max_attempts int4, timeout_seconds int4,
                   scheduled_for timestamptz, actor text, action text, source_ip inet,
                   request_id text)
),
q AS MATERIALIZED (
    SELECT id, organization_id, name, max_attempts, timeout_seconds FROM queues
    WHERE (organization_id, name) IN (SELECT organization_id, queue_name FROM i)
    FOR KEY SHARE
),
ins AS (
    INSERT INTO jobs (id, organization_id, queue_id, queue_name, job_type, payload, priority,
                      status, max_attempts, timeout_seconds, scheduled_for)
    SELECT i.id, q.organization_id, q.id, q.name, i.job_type, i.payload, i.priority,
           CASE WHEN i.scheduled_for > now() THEN 'scheduled' ELSE 'pending' END,
           coalesce(i.max_attempts, q.max_attempts), coalesce(i.timeout_seconds, q.timeout_seconds),
           coalesce(i.scheduled_for, now())
    FROM i JOIN q ON q.organization_id = i.organization_id AND q.name = i.queue_name
    ORDER BY i.n
    RETURNING *, CASE WHEN status = 'pending'
                      THEN pg_notify('taskforge_jobs', taskforge_wake_key(queue_id, job_type)) END
                     AS notified
),
audit AS (
    INSERT INTO audit_log (actor, organization_id, action, target, source_ip, request_id,
                           status_code)
    SELECT i.actor, i.organization_id, i.action, ins.id::text, i.source_ip, i.request_id, 201
    FROM ins JOIN i ON i.id = ins.id
    WHERE i.actor IS NOT NULL
    ORDER BY i.n
)
SELECT ins.*, i.n FROM ins JOIN i ON i.id = ins.id
