-- Results that page by bytes and tell the truth about every attempt.

-- The size of the result's JSON as the worker stored it: result pages stop at a byte budget by
-- summing these, without reading the results themselves. NULL for results stored before it
-- existed, which the listing measures instead.
ALTER TABLE job_items ADD COLUMN result_bytes integer CHECK (result_bytes >= 0);

-- Skipped items carry a reason code, like failed ones; rows skipped before codes existed get the
-- code of their recorded reason.
UPDATE job_items
   SET last_error_code = CASE
           WHEN last_error_message = 'job cancellation was requested' THEN 'job_cancel_requested'
           WHEN last_error_message = 'job deadline passed' THEN 'job_deadline_passed'
           WHEN last_error_message LIKE 'job is %' THEN 'job_not_running'
           WHEN last_error_message IN ('job cancelled', 'job timed_out', 'job failed')
               THEN replace(last_error_message, ' ', '_')
           ELSE 'skipped'
       END
 WHERE status = 'skipped' AND last_error_code IS NULL;

-- Each failed attempt that will be retried is in the job's history: an item's own error is then
-- only its final one.
ALTER TABLE job_events DROP CONSTRAINT job_events_event_check;
ALTER TABLE job_events ADD CONSTRAINT job_events_event_check CHECK (
    event IN ('submitted', 'started', 'item_failed', 'item_retried', 'item_skipped', 'items_skipped',
              'cancel_requested', 'cancelled', 'timed_out', 'finished', 'failed'));
