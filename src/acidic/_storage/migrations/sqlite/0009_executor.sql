-- acidic 0009: runs executed by another queue (Celery, RQ, Dramatiq).
-- executor: the queue that executes the run ("celery", "rq", "dramatiq"); NULL for
-- acidic's own worker and inline runs.
-- relay_after: a relay republishes the run to that queue only from then on. Each relay
-- that republishes it moves this ahead by as long as the run has been due, so a run stuck
-- behind a backlog is republished ever more rarely, and a second relay not at all.
ALTER TABLE acidic_runs ADD COLUMN executor VARCHAR(16);
ALTER TABLE acidic_runs ADD COLUMN relay_after DATETIME;
CREATE INDEX acidic_runs_executor_idx ON acidic_runs (executor, status);
