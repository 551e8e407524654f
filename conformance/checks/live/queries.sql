-- Named queries of the live database checks. Each starts with a "-- name: <name>" line.

-- name: server_version
SELECT current_setting('server_version_num')::int AS version_num, version() AS version;

-- name: table_exists
SELECT to_regclass(%(name)s) IS NOT NULL AS present;

-- name: sqlx_applied
SELECT version, description, checksum, success FROM _sqlx_migrations ORDER BY version;

-- name: job_indexes
SELECT indexname, indexdef FROM pg_indexes
WHERE tablename = 'jobs' AND schemaname = current_schema()
ORDER BY indexname;

-- name: connections
SELECT (SELECT count(*) FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid()) AS app_connections,
       current_setting('max_connections')::int AS max_connections;

-- name: listen_addresses
SELECT current_setting('listen_addresses') AS listen_addresses;

-- name: audit_rows_for_target
SELECT count(*) AS rows FROM audit_log
WHERE target = %(target)s AND starts_with(action, 'POST');

-- name: user_tables
SELECT schemaname, tablename FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
ORDER BY schemaname, tablename;

-- name: export_snapshot
SELECT pg_export_snapshot() AS snapshot;
