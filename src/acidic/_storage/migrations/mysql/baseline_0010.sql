-- acidic baseline at version 10: the schema that the numbered files 0001..0010 build,
-- created in one pass, for a database that has none of acidic's tables (a new install,
-- every test's fresh database). Numbered versions after it are applied on top as usual.
-- tests/test_migrations.py checks that it builds exactly what 0001..0010 build: when a
-- new version is added, this file may stay as it is (or move up, renamed, with it).

CREATE TABLE IF NOT EXISTS acidic_runs (
    id BIGINT NOT NULL AUTO_INCREMENT,
    idempotency_key VARCHAR(255) NOT NULL,
    job VARCHAR(255) NOT NULL,
    args LONGTEXT NOT NULL,
    steps LONGTEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    recovery_point VARCHAR(255),
    ctx LONGTEXT NOT NULL,
    result LONGTEXT,
    error LONGTEXT,
    attempts INTEGER NOT NULL,
    lock_token VARCHAR(32),
    locked_at DATETIME(6),
    created_at DATETIME(6) NOT NULL,
    last_run_at DATETIME(6),
    finished_at DATETIME(6),
    queue VARCHAR(100),
    priority INTEGER NOT NULL DEFAULT 0,
    run_at DATETIME(6),
    lock_expires_at DATETIME(6),
    attempt_limit INTEGER,
    cancel_requested BOOL NOT NULL DEFAULT 0,
    owner VARCHAR(255),
    parent_id BIGINT,
    concurrency_key VARCHAR(255),
    concurrency_limit INTEGER,
    traceparent VARCHAR(255),
    executor VARCHAR(16),
    relay_after DATETIME(6),
    PRIMARY KEY (id),
    CONSTRAINT acidic_runs_key_uq UNIQUE (idempotency_key),
    INDEX acidic_runs_due_idx (queue, run_at),
    INDEX acidic_runs_finished_idx (finished_at),
    INDEX acidic_runs_lock_idx (lock_expires_at),
    INDEX acidic_runs_claim_idx (queue, status, priority DESC, run_at, id),
    INDEX acidic_runs_owner_idx (owner),
    INDEX acidic_runs_parent_idx (parent_id),
    INDEX acidic_runs_concurrency_idx (concurrency_key, status),
    INDEX acidic_runs_executor_idx (executor, status)
) CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS acidic_history (
    id BIGINT NOT NULL AUTO_INCREMENT,
    run_id BIGINT NOT NULL,
    step VARCHAR(255) NOT NULL,
    event VARCHAR(16) NOT NULL,
    at DATETIME(6) NOT NULL,
    attempt INTEGER NOT NULL,
    error LONGTEXT,
    PRIMARY KEY (id),
    INDEX acidic_history_run_idx (run_id, id),
    CONSTRAINT acidic_history_run_fk FOREIGN KEY (run_id) REFERENCES acidic_runs (id) ON DELETE CASCADE
) CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ENGINE=InnoDB;

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

CREATE TABLE IF NOT EXISTS acidic_workers (
    id VARCHAR(255) NOT NULL,
    host VARCHAR(255) NOT NULL,
    pid INTEGER NOT NULL,
    queues LONGTEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    version VARCHAR(64) NOT NULL,
    jobs LONGTEXT NOT NULL,
    started_at DATETIME(6) NOT NULL,
    heartbeat_at DATETIME(6) NOT NULL,
    gone_at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    INDEX acidic_workers_gone_idx (gone_at)
) CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS acidic_paused_queues (
    name VARCHAR(100) NOT NULL,
    paused_at DATETIME(6) NOT NULL,
    PRIMARY KEY (name)
) CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS acidic_awaits (
    id BIGINT NOT NULL AUTO_INCREMENT,
    run_id BIGINT NOT NULL,
    awaited_key VARCHAR(255) NOT NULL,
    PRIMARY KEY (id),
    INDEX acidic_awaits_run_idx (run_id),
    CONSTRAINT acidic_awaits_run_fk FOREIGN KEY (run_id) REFERENCES acidic_runs (id) ON DELETE CASCADE
) CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS acidic_limits (
    name VARCHAR(255) NOT NULL,
    PRIMARY KEY (name)
) CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS acidic_starts (
    id BIGINT NOT NULL AUTO_INCREMENT,
    name VARCHAR(255) NOT NULL,
    at DATETIME(6) NOT NULL,
    PRIMARY KEY (id),
    INDEX acidic_starts_name_idx (name, at)
) CHARSET=utf8mb4 COLLATE=utf8mb4_nopad_bin ENGINE=InnoDB;
