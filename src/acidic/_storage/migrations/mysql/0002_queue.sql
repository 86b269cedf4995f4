-- acidic 0002: the run row is also the queue entry (background execution).
-- queue NULL: an inline run (app.run), never picked up by a worker.
-- run_at: when a pending or scheduled run is due (NULL in every other status).
-- lock_expires_at: when the owner's lock goes stale (locked_at + the job's lock_timeout).
-- attempt_limit: the attempt count at which an error fails the run instead of retrying it.
-- MySQL/MariaDB DDL is not transactional: each statement can be re-run safely.

ALTER TABLE acidic_runs
    ADD COLUMN IF NOT EXISTS queue VARCHAR(100),
    ADD COLUMN IF NOT EXISTS priority INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS run_at DATETIME(6),
    ADD COLUMN IF NOT EXISTS lock_expires_at DATETIME(6),
    ADD COLUMN IF NOT EXISTS attempt_limit INTEGER,
    ADD COLUMN IF NOT EXISTS cancel_requested BOOL NOT NULL DEFAULT 0;

CREATE INDEX IF NOT EXISTS acidic_runs_due_idx ON acidic_runs (queue, run_at);
CREATE INDEX IF NOT EXISTS acidic_runs_finished_idx ON acidic_runs (finished_at);
CREATE INDEX IF NOT EXISTS acidic_runs_lock_idx ON acidic_runs (lock_expires_at);

CREATE TABLE IF NOT EXISTS acidic_signals (
    id BIGINT NOT NULL AUTO_INCREMENT,
    run_id BIGINT NOT NULL,
    name VARCHAR(255) NOT NULL,
    payload LONGTEXT NOT NULL,
    created_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    INDEX acidic_signals_run_idx (run_id, name, id),
    CONSTRAINT acidic_signals_run_fk FOREIGN KEY (run_id) REFERENCES acidic_runs (id) ON DELETE CASCADE
) CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ENGINE=InnoDB;
