-- acidic 0006: child runs and Await.
-- parent_id: the run whose step spawned this one (self.spawn), so that a child that
-- finishes wakes its parent and self.children() finds them. acidic_awaits: the keys a
-- parked (awaiting) run waits for; it is due again once all of them are finished.
ALTER TABLE acidic_runs ADD COLUMN parent_id BIGINT;
CREATE INDEX acidic_runs_parent_idx ON acidic_runs (parent_id);

CREATE TABLE acidic_awaits (
    id INTEGER NOT NULL,
    run_id BIGINT NOT NULL,
    awaited_key VARCHAR(255) NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT acidic_awaits_run_fk FOREIGN KEY (run_id) REFERENCES acidic_runs (id) ON DELETE CASCADE
);
CREATE INDEX acidic_awaits_run_idx ON acidic_awaits (run_id);
