-- acidic 0007: concurrency and rate limits (acidic.Limit, acidic.Queue).
-- concurrency_key/concurrency_limit: a limited run's key and its job's maximum, so that a
-- claim counts the runs of the key that hold a lock. acidic_limits: one row per limit
-- name (a concurrency key, or queue:<name>), locked by the claim that decides on it, so
-- that two claimers never both take the last slot. acidic_starts: when a rate-limited
-- queue started its runs (the sliding window), pruned by the claims.
ALTER TABLE acidic_runs
    ADD COLUMN IF NOT EXISTS concurrency_key VARCHAR(255),
    ADD COLUMN IF NOT EXISTS concurrency_limit INTEGER;
CREATE INDEX IF NOT EXISTS acidic_runs_concurrency_idx ON acidic_runs (concurrency_key, status);

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
