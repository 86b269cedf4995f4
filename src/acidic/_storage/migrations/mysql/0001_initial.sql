-- acidic 0001: runs (one row per idempotency key) and their step history.
-- MySQL/MariaDB DDL is not transactional: every statement is written to be re-run safely.
-- utf8mb4_nopad_bin: keys compare byte for byte ('k' and 'k ' are different keys);
-- the runner uses utf8mb4_0900_bin on MySQL 8, which has no nopad_bin.

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
    PRIMARY KEY (id),
    CONSTRAINT acidic_runs_key_uq UNIQUE (idempotency_key)
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
