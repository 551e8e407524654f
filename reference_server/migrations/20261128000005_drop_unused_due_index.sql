-- jobs_due_idx is read by no query since dequeue uses jobs_ready_idx / jobs_builtin_ready_idx and
-- promotion uses jobs_scheduled_idx; every submit paid for maintaining it.
DROP INDEX IF EXISTS jobs_due_idx;
