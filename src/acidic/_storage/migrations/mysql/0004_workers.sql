-- acidic 0004: the fleet (workers, their runs, paused queues).
-- owner: the id of the worker (acidic_workers.id) that claimed a running run; NULL for
-- an inline run (app.run) and for every run not running. Written by the claim statement
-- itself and cleared by the release that ends the run: no statement is added per run.
-- acidic_workers: each worker process registers itself at start, renews heartbeat_at
-- (and gone_at, the time after which it counts as gone: three missed heartbeats) on its
-- heartbeat cadence and deletes its row on a graceful stop.
-- acidic_paused_queues: a queue named here is not claimed from (enqueueing still works).
-- The running runs of a queue are read through acidic_runs_claim_idx (queue, status, ...):
-- no partial index here, and a second index led by the status made claims walk it.
-- MySQL/MariaDB DDL is not transactional: each statement can be re-run safely.

ALTER TABLE acidic_runs ADD COLUMN IF NOT EXISTS owner VARCHAR(255);

CREATE INDEX IF NOT EXISTS acidic_runs_owner_idx ON acidic_runs (owner);

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
