-- acidic 0009: runs executed by another queue (Celery, RQ, Dramatiq).
-- executor: the queue that executes the run ("celery", "rq", "dramatiq"); NULL for
-- acidic's own worker and inline runs.
-- relay_after: a relay republishes the run to that queue only from then on. Each relay
-- that republishes it moves this ahead by as long as the run has been due, so a run stuck
-- behind a backlog is republished ever more rarely, and a second relay not at all.
-- MySQL/MariaDB DDL is not transactional: each statement can be re-run safely.
ALTER TABLE acidic_runs
    ADD COLUMN IF NOT EXISTS executor VARCHAR(16),
    ADD COLUMN IF NOT EXISTS relay_after DATETIME(6);
CREATE INDEX IF NOT EXISTS acidic_runs_executor_idx ON acidic_runs (executor, status);
