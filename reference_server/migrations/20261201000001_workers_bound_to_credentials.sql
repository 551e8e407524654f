-- A worker identity belongs to the credential that registered it: "user:<id>" or "api_key:<id>",
-- as the audit log names actors. Heartbeat, lease, complete, fail and ack by any other credential
-- find no such worker (404). Rows registered before this column existed stay NULL, which no
-- caller over HTTP matches: such workers register again.
ALTER TABLE workers ADD COLUMN registered_by TEXT;
