-- acidic 0002: the run row is also the queue entry (background execution).
-- queue NULL: an inline run (app.run), never picked up by a worker.
-- run_at: when a pending or scheduled run is due (NULL in every other status).
-- lock_expires_at: when the owner's lock goes stale (locked_at + the job's lock_timeout).
-- attempt_limit: the attempt count at which an error fails the run instead of retrying it.

ALTER TABLE acidic_runs ADD COLUMN queue VARCHAR(100);
ALTER TABLE acidic_runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE acidic_runs ADD COLUMN run_at DATETIME;
ALTER TABLE acidic_runs ADD COLUMN lock_expires_at DATETIME;
ALTER TABLE acidic_runs ADD COLUMN attempt_limit INTEGER;
ALTER TABLE acidic_runs ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT 0;

CREATE INDEX acidic_runs_due_idx ON acidic_runs (queue, run_at);
CREATE INDEX acidic_runs_finished_idx ON acidic_runs (finished_at);
CREATE INDEX acidic_runs_lock_idx ON acidic_runs (lock_expires_at);

CREATE TABLE acidic_signals (
    id INTEGER NOT NULL,
    run_id BIGINT NOT NULL,
    name VARCHAR(255) NOT NULL,
    payload TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT acidic_signals_run_fk FOREIGN KEY (run_id) REFERENCES acidic_runs (id) ON DELETE CASCADE
);

CREATE INDEX acidic_signals_run_idx ON acidic_signals (run_id, name, id);
