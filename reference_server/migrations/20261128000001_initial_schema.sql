-- TaskForge reference schema. PostgreSQL is the source of truth for every job.
-- Recorded in _sqlx_migrations exactly as `sqlx migrate run` records it.

CREATE TABLE organizations (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email           TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    role            TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Emails are unique regardless of case.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE api_keys (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    key_prefix      TEXT NOT NULL,            -- first characters, shown in listings
    key_hash        BYTEA NOT NULL UNIQUE,    -- SHA-256 of the whole key; the key itself is never stored
    permissions     TEXT[] NOT NULL,
    expires_at      TIMESTAMPTZ,
    revoked_at      TIMESTAMPTZ,
    last_used_at    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_org_idx ON api_keys (organization_id);

CREATE TABLE queues (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name            TEXT NOT NULL CHECK (name ~ '^[A-Za-z0-9_.:-]{1,100}$'),
    description     TEXT,
    priority        SMALLINT NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 9),
    max_attempts    INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 10),
    timeout_seconds INTEGER NOT NULL DEFAULT 300 CHECK (timeout_seconds BETWEEN 1 AND 86400),
    initial_retry_delay_seconds DOUBLE PRECISION NOT NULL DEFAULT 1 CHECK (initial_retry_delay_seconds >= 0),
    max_retry_delay_seconds     DOUBLE PRECISION NOT NULL DEFAULT 300 CHECK (max_retry_delay_seconds >= 0),
    backoff_multiplier          DOUBLE PRECISION NOT NULL DEFAULT 2.0 CHECK (backoff_multiplier >= 1),
    retention_days  INTEGER NOT NULL DEFAULT 30 CHECK (retention_days BETWEEN 1 AND 3650),
    paused          BOOLEAN NOT NULL DEFAULT false,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (organization_id, name)
);

CREATE TABLE workers (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id     UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    queues              TEXT[] NOT NULL,
    max_concurrent_jobs INTEGER NOT NULL CHECK (max_concurrent_jobs BETWEEN 1 AND 1000),
    heartbeat_interval_seconds INTEGER NOT NULL DEFAULT 10,
    last_heartbeat_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX workers_org_idx ON workers (organization_id);

CREATE TABLE jobs (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- FIFO within a priority: a monotonic sequence, since UUIDs carry no order.
    seq             BIGINT GENERATED ALWAYS AS IDENTITY,
    organization_id UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    queue_id        UUID NOT NULL REFERENCES queues (id),
    queue_name      TEXT NOT NULL,
    job_type        TEXT NOT NULL CHECK (length(job_type) BETWEEN 1 AND 100),
    payload         JSONB NOT NULL,
    priority        SMALLINT NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 9),
    status          TEXT NOT NULL CHECK (status IN
                        ('pending', 'scheduled', 'processing', 'succeeded', 'failed', 'dead', 'cancelled')),
    attempt_count   INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL CHECK (max_attempts BETWEEN 1 AND 10),
    timeout_seconds INTEGER NOT NULL CHECK (timeout_seconds BETWEEN 1 AND 86400),
    scheduled_for   TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_expires_at TIMESTAMPTZ,
    worker_id       UUID,
    output          JSONB,
    error_message   TEXT,
    idempotency_key TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at    TIMESTAMPTZ
);
-- The dequeue path reads only this partial index: finished rows never enter it.
CREATE INDEX jobs_ready_idx ON jobs (queue_id, priority DESC, seq)
    WHERE status IN ('pending', 'scheduled');
CREATE INDEX jobs_due_idx ON jobs (scheduled_for) WHERE status IN ('pending', 'scheduled');
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE status = 'processing';
CREATE INDEX jobs_org_created_idx ON jobs (organization_id, created_at DESC);
CREATE INDEX jobs_queue_status_idx ON jobs (queue_id, status);
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (organization_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- One row per mutating API call (guide 6.1: audit log enabled).
CREATE TABLE audit_log (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor           TEXT NOT NULL,            -- user:<id>, api_key:<id> or anonymous
    organization_id UUID,
    action          TEXT NOT NULL,            -- e.g. "POST /api/v1/jobs"
    target          TEXT,                     -- id or name of the object acted on
    source_ip       INET,
    request_id      TEXT NOT NULL,
    status_code     INTEGER NOT NULL
);
CREATE INDEX audit_log_org_time_idx ON audit_log (organization_id, occurred_at DESC);
