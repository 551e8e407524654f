-- Named queries of accounts.py: organisations, users, API keys and the audit log.
-- Each query starts with a "-- name: <name>" line; every query is scoped by organisation
-- except the lookups that find the organisation (login by email, API key by hash).

-- name: insert_organization
INSERT INTO organizations (name) VALUES ($1) RETURNING id;

-- name: insert_user
INSERT INTO users (organization_id, email, password_hash, role)
VALUES ($1, $2, $3, $4)
RETURNING id;

-- name: user_by_email
SELECT id, organization_id, email, password_hash, role
FROM users
WHERE lower(email) = lower($1);

-- name: user_by_id
SELECT id, organization_id, email, role
FROM users
WHERE id = $1 AND organization_id = $2;

-- name: insert_api_key
INSERT INTO api_keys (organization_id, user_id, name, key_prefix, key_hash, permissions, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id, name, key_prefix, permissions, expires_at, revoked_at, last_used_at, created_at;

-- name: list_api_keys
SELECT id, name, key_prefix, permissions, expires_at, revoked_at, last_used_at, created_at
FROM api_keys
WHERE organization_id = $1
ORDER BY created_at DESC, id;

-- name: revoke_api_key
UPDATE api_keys
SET revoked_at = coalesce(revoked_at, now())
WHERE id = $1 AND organization_id = $2
RETURNING id;

-- name: api_key_by_hash
-- The owner's current role bounds the key: a demoted user's keys lose the extra permissions.
-- touch_due: whether touch_api_key would write (it is skipped otherwise, saving a round trip).
SELECT k.id, k.organization_id, k.user_id, k.permissions, k.expires_at, u.role,
       (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute') AS touch_due
FROM api_keys k
JOIN users u ON u.id = k.user_id AND u.organization_id = k.organization_id
WHERE k.key_hash = $1
  AND k.revoked_at IS NULL
  AND (k.expires_at IS NULL OR k.expires_at > now());

-- name: touch_api_key
-- At most one write per key per minute, however busy the key is.
UPDATE api_keys
SET last_used_at = now()
WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');

-- name: insert_audit_grouped
-- Group commit: the audit rows of concurrent requests in one statement, ids in arrival order.
INSERT INTO audit_log (actor, organization_id, action, target, source_ip, request_id, status_code)
SELECT a.actor, a.organization_id, a.action, a.target, a.source_ip::inet, a.request_id,
       a.status_code
FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int4[])
         WITH ORDINALITY
         AS a (actor, organization_id, action, target, source_ip, request_id, status_code, ord)
ORDER BY a.ord;

-- name: queue_lengths
-- For the taskforge_queue_length gauge: unfinished jobs only, which the partial indexes serve.
SELECT queue_name, status, count(*) AS n
FROM jobs
WHERE status IN ('pending', 'scheduled', 'processing')
GROUP BY queue_name, status;

-- name: active_workers
SELECT count(*)
FROM workers
WHERE last_heartbeat_at > now() - make_interval(secs => heartbeat_interval_seconds * 3);
