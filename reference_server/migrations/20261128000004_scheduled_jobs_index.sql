-- Due-job promotion reads only jobs waiting for their time (retries in backoff, future jobs), which
-- are few; without this index it would walk every pending or finished row once a second.
CREATE INDEX jobs_scheduled_idx ON jobs (scheduled_for) WHERE status = 'scheduled';
