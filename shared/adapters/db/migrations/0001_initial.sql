-- Jobs, their items and the append-only audit log.
-- Status vocabularies mirror shared/models.py (JobStatus, ItemStatus, JobEventType).

CREATE TABLE jobs (
    id                  uuid PRIMARY KEY,
    owner_tenant_id     text NOT NULL,
    owner_object_id     text NOT NULL,
    status              text NOT NULL DEFAULT 'pending' CONSTRAINT jobs_status_check CHECK (
        status IN ('pending', 'running', 'succeeded', 'completed_with_errors',
                   'failed', 'cancelled', 'timed_out')),
    options             jsonb NOT NULL DEFAULT '{}',
    total               integer NOT NULL CHECK (total >= 0),
    succeeded           integer NOT NULL DEFAULT 0 CHECK (succeeded >= 0),
    failed              integer NOT NULL DEFAULT 0 CHECK (failed >= 0),
    skipped             integer NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    deadline_at         timestamptz NOT NULL,
    cancel_requested_at timestamptz,
    cancel_requested_by text,
    cancel_reason       text,
    parent_job_id       uuid REFERENCES jobs (id),
    idempotency_key     text,
    request_hash        text,
    error               text,
    CONSTRAINT jobs_counters_within_total CHECK (succeeded + failed + skipped <= total),
    CONSTRAINT jobs_key_has_hash CHECK (idempotency_key IS NULL OR request_hash IS NOT NULL)
);

-- A live idempotency key belongs to one job per owner; a key older than 24 h is released
-- (set NULL on its old job) by the next submission that reuses it.
CREATE UNIQUE INDEX jobs_owner_idempotency_key
    ON jobs (owner_tenant_id, owner_object_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- "My jobs, newest first" with keyset pagination on (created_at, id).
CREATE INDEX jobs_owner_newest ON jobs (owner_tenant_id, owner_object_id, created_at DESC, id DESC);

-- The reconciler's scan of unfinished jobs.
CREATE INDEX jobs_unfinished ON jobs (created_at) WHERE status IN ('pending', 'running');

CREATE TABLE job_items (
    job_id             uuid NOT NULL REFERENCES jobs (id),
    seq                integer NOT NULL CHECK (seq >= 0),
    url                text NOT NULL,
    status             text NOT NULL DEFAULT 'pending' CONSTRAINT job_items_status_check CHECK (
        status IN ('pending', 'succeeded', 'failed', 'skipped')),
    attempts           integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error_code    text,
    last_error_message text,
    http_status        integer,
    final_url          text,
    started_at         timestamptz,
    finished_at        timestamptz,
    duration_ms        integer CHECK (duration_ms >= 0),
    result             jsonb,
    PRIMARY KEY (job_id, seq)
);

-- Serves both "pending items to enqueue" and "items with status X" listings in seq order.
CREATE INDEX job_items_by_status ON job_items (job_id, status, seq);

CREATE TABLE job_events (
    id     bigserial PRIMARY KEY,
    job_id uuid NOT NULL REFERENCES jobs (id),
    at     timestamptz NOT NULL DEFAULT now(),
    actor  text NOT NULL,
    event  text NOT NULL CONSTRAINT job_events_event_check CHECK (
        event IN ('submitted', 'started', 'item_failed', 'item_skipped', 'items_skipped',
                  'cancel_requested', 'cancelled', 'timed_out', 'finished', 'failed')),
    reason text,
    data   jsonb
);

CREATE INDEX job_events_by_job ON job_events (job_id, id);

-- The audit log is append-only for every role, including the table owner the app runs as.
CREATE FUNCTION job_events_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'job_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER job_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_reject_change();

CREATE TRIGGER job_events_no_truncate
    BEFORE TRUNCATE ON job_events
    FOR EACH STATEMENT EXECUTE FUNCTION job_events_reject_change();
