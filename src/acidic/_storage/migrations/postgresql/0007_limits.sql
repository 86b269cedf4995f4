-- acidic 0007: concurrency and rate limits (acidic.Limit, acidic.Queue).
-- concurrency_key/concurrency_limit: a limited run's key and its job's maximum, so that a
-- claim counts the runs of the key that hold a lock. acidic_limits: one row per limit
-- name (a concurrency key, or queue:<name>), locked by the claim that decides on it, so
-- that two claimers never both take the last slot. acidic_starts: when a rate-limited
-- queue started its runs (the sliding window), pruned by the claims.
ALTER TABLE acidic_runs ADD COLUMN concurrency_key VARCHAR(255);
ALTER TABLE acidic_runs ADD COLUMN concurrency_limit INTEGER;
CREATE INDEX acidic_runs_concurrency_idx ON acidic_runs (concurrency_key, status);

CREATE TABLE acidic_limits (
    name VARCHAR(255) NOT NULL,
    PRIMARY KEY (name)
);

CREATE TABLE acidic_starts (
    id BIGSERIAL NOT NULL,
    name VARCHAR(255) NOT NULL,
    at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX acidic_starts_name_idx ON acidic_starts (name, at);
