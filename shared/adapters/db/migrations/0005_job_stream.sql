-- What the job event stream (GET /api/jobs/{id}/events) reads, from any instance.

-- `done_rank` numbers a job's items in the order they became final: 1, 2, 3, ... with no gaps.
-- It is set in the statement that counts the item on the job, while that statement holds the
-- job's row lock, so rank N commits only after rank N-1, and a reader that sees the job's counters
-- sum to N sees exactly ranks 1..N. A stream's cursor is a rank: nothing lost, nothing repeated.
ALTER TABLE job_items ADD COLUMN done_rank integer CHECK (done_rank > 0);

-- Items that were final before this migration get ranks in the order they finished.
UPDATE job_items i
   SET done_rank = r.rank
  FROM (SELECT job_id, seq, row_number() OVER (PARTITION BY job_id ORDER BY finished_at, seq) AS rank
          FROM job_items WHERE status <> 'pending') r
 WHERE i.job_id = r.job_id AND i.seq = r.seq;

CREATE UNIQUE INDEX job_items_by_done_rank ON job_items (job_id, done_rank) WHERE done_rank IS NOT NULL;

-- Streams wait for a change of their job instead of polling: every change a stream shows (status,
-- counters, a cancel request) notifies `trawl_job_changed` with the job's id, delivered at commit.
CREATE FUNCTION jobs_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('trawl_job_changed', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER jobs_notify_change
    AFTER UPDATE ON jobs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.succeeded <> NEW.succeeded OR OLD.failed <> NEW.failed OR OLD.skipped <> NEW.skipped
          OR OLD.cancel_requested_at IS DISTINCT FROM NEW.cancel_requested_at)
    EXECUTE FUNCTION jobs_notify_change();
