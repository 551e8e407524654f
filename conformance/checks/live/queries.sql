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

-- name: uuid_ossp_installed
SELECT e.extversion, n.nspname AS schema FROM pg_extension e
JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE e.extname = 'uuid-ossp';

-- name: uuid_ossp_available
SELECT count(*) > 0 AS available FROM pg_available_extensions WHERE name = 'uuid-ossp';

-- name: user_schema_objects
SELECT count(*) AS objects FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm')
  AND n.nspname NOT IN ('information_schema') AND n.nspname !~ '^pg_';

-- name: uuid_ossp_users
-- What in the schema calls a uuid-ossp function: column defaults (generated columns too),
-- views and the bodies of functions outside any extension (plpgsql bodies are not resolved at
-- CREATE time, so they can name a function that is not installed).
WITH calls AS (SELECT '\m(uuid_generate_v[1345](mc)?|uuid_ns_[a-z]+)\s*\(' AS pattern)
SELECT 'column default' AS kind, d.adrelid::regclass::text || '.' || a.attname AS name
FROM pg_attrdef d
JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum, calls
WHERE pg_get_expr(d.adbin, d.adrelid) ~* calls.pattern
UNION ALL
SELECT CASE c.relkind WHEN 'm' THEN 'materialized view' ELSE 'view' END, c.oid::regclass::text
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, calls
WHERE c.relkind IN ('v', 'm')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND pg_get_viewdef(c.oid) ~* calls.pattern
UNION ALL
SELECT 'function', p.oid::regprocedure::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang, calls
WHERE l.lanname NOT IN ('c', 'internal')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND NOT EXISTS (SELECT 1 FROM pg_depend dep
                  WHERE dep.classid = 'pg_proc'::regclass AND dep.objid = p.oid
                    AND dep.deptype = 'e')
  AND p.prosrc ~* calls.pattern
ORDER BY 1, 2;
