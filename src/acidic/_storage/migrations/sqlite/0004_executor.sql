-- acidic 0004: runs executed by another queue (Celery, RQ, Dramatiq).
-- executor: the queue that executes the run ("celery", "rq", "dramatiq"); NULL for
-- acidic's own worker and inline runs.
-- published_at: when a relay last republished the run to that queue, so that a second
-- relay (or the next pass) does not publish it again within the grace period.
ALTER TABLE acidic_runs ADD COLUMN executor VARCHAR(16);
ALTER TABLE acidic_runs ADD COLUMN published_at DATETIME;
CREATE INDEX acidic_runs_executor_idx ON acidic_runs (executor, status);
