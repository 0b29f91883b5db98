-- Which queue message of an item is known to be sent, and when its next attempt is due.
-- `queued_attempt` is the attempt count carried by the newest message sent for the item: NULL until
-- the orchestration first enqueues it, so a restarted orchestration sends only what was never sent
-- (no re-send storms, no second retry budget). Items pending before this migration keep NULL and
-- are handled as "follow-up not known to be sent" by the worker, which re-sends at most once.
ALTER TABLE job_items
    ADD COLUMN queued_attempt  integer CHECK (queued_attempt >= 0),
    ADD COLUMN next_attempt_at timestamptz;

-- The enqueue step's scan: pending items of a job that have no message yet.
CREATE INDEX job_items_unsent ON job_items (job_id, seq) WHERE status = 'pending' AND queued_attempt IS NULL;
