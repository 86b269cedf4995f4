-- acidic 0001: runs (one row per idempotency key) and their step history.

CREATE TABLE acidic_runs (
    id INTEGER NOT NULL,
    idempotency_key VARCHAR(255) NOT NULL,
    job VARCHAR(255) NOT NULL,
    args TEXT NOT NULL,
    steps TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    recovery_point VARCHAR(255),
    ctx TEXT NOT NULL,
    result TEXT,
    error TEXT,
    attempts INTEGER NOT NULL,
    lock_token VARCHAR(32),
    locked_at DATETIME,
    created_at DATETIME NOT NULL,
    last_run_at DATETIME,
    finished_at DATETIME,
    PRIMARY KEY (id),
    CONSTRAINT acidic_runs_key_uq UNIQUE (idempotency_key)
);

CREATE TABLE acidic_history (
    id INTEGER NOT NULL,
    run_id BIGINT NOT NULL,
    step VARCHAR(255) NOT NULL,
    event VARCHAR(16) NOT NULL,
    at DATETIME NOT NULL,
    attempt INTEGER NOT NULL,
    error TEXT,
    PRIMARY KEY (id),
    CONSTRAINT acidic_history_run_fk FOREIGN KEY (run_id) REFERENCES acidic_runs (id) ON DELETE CASCADE
);

CREATE INDEX acidic_history_run_idx ON acidic_history (run_id, id);
