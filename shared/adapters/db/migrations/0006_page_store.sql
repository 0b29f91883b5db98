-- The page store: the bodies an item kept (by hash; the bytes live in Blob Storage), and each owner's
-- pages with the versions of their main content.

-- A page is a normalised URL per owner: one caller's scrapes never answer another's.
CREATE TABLE pages (
    id              uuid PRIMARY KEY,
    owner_tenant_id text NOT NULL,
    owner_object_id text NOT NULL,
    url             text NOT NULL,
    host            text NOT NULL,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT pages_one_per_owner_and_url UNIQUE (owner_tenant_id, owner_object_id, url)
);

CREATE INDEX pages_by_owner_host ON pages (owner_tenant_id, owner_object_id, host, url);

-- A version is a distinct main content of a page, first seen by one item. An item whose main text has
-- the digest of its page's latest version records no version: it saw that one again (last_seen_at). The
-- digest is shared.domain.content.text_digest of the main text; the *_sha256 columns address bodies.
CREATE TABLE page_versions (
    id              bigserial PRIMARY KEY,
    page_id         uuid NOT NULL REFERENCES pages (id),
    main_text_digest text NOT NULL,
    markdown_sha256 text,
    markdown_bytes  integer CHECK (markdown_bytes >= 0),
    text_sha256     text,
    text_bytes      integer CHECK (text_bytes >= 0),
    html_sha256     text,
    html_bytes      integer CHECK (html_bytes >= 0),
    job_id          uuid NOT NULL,
    seq             integer NOT NULL,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (job_id, seq) REFERENCES job_items (job_id, seq)
);

CREATE INDEX page_versions_newest ON page_versions (page_id, id DESC);

-- Search runs over each page's latest version: its main text as a tsvector (the text itself stays in Blob
-- Storage), in the text-search configuration of the page's language where PostgreSQL has one.
ALTER TABLE page_versions
    ADD COLUMN search_config regconfig NOT NULL DEFAULT 'simple',
    ADD COLUMN search_vector tsvector;
ALTER TABLE pages ADD COLUMN latest_version_id bigint REFERENCES page_versions (id);
CREATE INDEX page_versions_search ON page_versions USING gin (search_vector);

-- What a succeeded item kept: the SHA-256 and size of each body it stored, its page, and how its main
-- content compared with that page's latest version before it.
ALTER TABLE job_items
    ADD COLUMN markdown_sha256 text,
    ADD COLUMN markdown_bytes  integer CHECK (markdown_bytes >= 0),
    ADD COLUMN text_sha256     text,
    ADD COLUMN text_bytes      integer CHECK (text_bytes >= 0),
    ADD COLUMN html_sha256     text,
    ADD COLUMN html_bytes      integer CHECK (html_bytes >= 0),
    ADD COLUMN page_id         uuid REFERENCES pages (id),
    ADD COLUMN page_version_id bigint REFERENCES page_versions (id),
    ADD COLUMN change          text CONSTRAINT job_items_change_check CHECK (change IN ('new', 'changed', 'unchanged')),
    -- Answered from the page store without fetching (the job's max_age_seconds).
    ADD COLUMN cached          boolean NOT NULL DEFAULT false;

-- Which items still use a version (deleting a job's data keeps the versions other jobs use).
CREATE INDEX job_items_by_page_version ON job_items (page_version_id) WHERE page_version_id IS NOT NULL;

-- Bodies no row may refer to any more (their job's data was deleted): the retention timer deletes each blob
-- once it is still unreferenced after a grace period, and only if no worker stored (touched) it since.
CREATE TABLE blob_garbage (
    sha256   text PRIMARY KEY,
    noted_at timestamptz NOT NULL DEFAULT now()
);

-- Who deleted a job's data, and when (DELETE /api/jobs/{id}/data, or retention).
ALTER TABLE job_events DROP CONSTRAINT job_events_event_check;
ALTER TABLE job_events ADD CONSTRAINT job_events_event_check CHECK (
    event IN ('submitted', 'started', 'item_failed', 'item_retried', 'item_skipped', 'items_skipped',
              'cancel_requested', 'cancelled', 'timed_out', 'finished', 'failed', 'data_deleted'));

CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
