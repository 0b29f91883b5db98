-- "The retries of this job" (JobView.children): jobs by parent, only the few that have one.
CREATE INDEX jobs_by_parent ON jobs (parent_job_id, created_at, id) WHERE parent_job_id IS NOT NULL;
