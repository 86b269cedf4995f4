-- acidic 0004: the fleet (workers, their runs, paused queues).
-- owner: the id of the worker (acidic_workers.id) that claimed a running run; NULL for
-- an inline run (app.run) and for every run not running. Written by the claim statement
-- itself and cleared by the release that ends the run: no statement is added per run.
-- acidic_workers: each worker process registers itself at start, renews heartbeat_at
-- (and gone_at, the time after which it counts as gone: three missed heartbeats) on its
-- heartbeat cadence and deletes its row on a graceful stop.
-- acidic_paused_queues: a queue named here is not claimed from (enqueueing still works).
-- acidic_runs_running_idx: the running runs of a queue (acidic queues, a worker's runs).
-- acidic_runs_waiting_job_idx: the waiting runs of a queue by job (due runs of a job that no
-- live worker knows), read without visiting the table.

ALTER TABLE acidic_runs ADD COLUMN owner VARCHAR(255);

CREATE INDEX acidic_runs_owner_idx ON acidic_runs (owner);
CREATE INDEX acidic_runs_running_idx ON acidic_runs (queue, lock_expires_at)
    WHERE status = 'running';
CREATE INDEX acidic_runs_waiting_job_idx ON acidic_runs (queue, job, run_at)
    WHERE status IN ('pending', 'scheduled');

CREATE TABLE acidic_workers (
    id VARCHAR(255) NOT NULL,
    host VARCHAR(255) NOT NULL,
    pid INTEGER NOT NULL,
    queues TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    version VARCHAR(64) NOT NULL,
    jobs TEXT NOT NULL,
    started_at DATETIME NOT NULL,
    heartbeat_at DATETIME NOT NULL,
    gone_at DATETIME NOT NULL,
    PRIMARY KEY (id)
);

CREATE INDEX acidic_workers_gone_idx ON acidic_workers (gone_at);

CREATE TABLE acidic_paused_queues (
    name VARCHAR(100) NOT NULL,
    paused_at DATETIME NOT NULL,
    PRIMARY KEY (name)
);
