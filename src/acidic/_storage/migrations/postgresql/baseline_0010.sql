-- acidic baseline at version 10: the schema that the numbered files 0001..0010 build,
-- created in one pass, for a database that has none of acidic's tables (a new install,
-- every test's fresh database). Numbered versions after it are applied on top as usual.
-- tests/test_migrations.py checks that it builds exactly what 0001..0010 build: when a
-- new version is added, this file may stay as it is (or move up, renamed, with it).

CREATE TABLE acidic_runs (
    id BIGSERIAL NOT NULL,
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
    locked_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    last_run_at TIMESTAMP WITH TIME ZONE,
    finished_at TIMESTAMP WITH TIME ZONE,
    queue VARCHAR(100),
    priority INTEGER NOT NULL DEFAULT 0,
    run_at TIMESTAMP WITH TIME ZONE,
    lock_expires_at TIMESTAMP WITH TIME ZONE,
    attempt_limit INTEGER,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    owner VARCHAR(255),
    parent_id BIGINT,
    concurrency_key VARCHAR(255),
    concurrency_limit INTEGER,
    traceparent VARCHAR(255),
    executor VARCHAR(16),
    relay_after TIMESTAMP WITH TIME ZONE,
    PRIMARY KEY (id),
    CONSTRAINT acidic_runs_key_uq UNIQUE (idempotency_key)
);

CREATE TABLE acidic_history (
    id BIGSERIAL NOT NULL,
    run_id BIGINT NOT NULL,
    step VARCHAR(255) NOT NULL,
    event VARCHAR(16) NOT NULL,
    at TIMESTAMP WITH TIME ZONE NOT NULL,
    attempt INTEGER NOT NULL,
    error TEXT,
    PRIMARY KEY (id),
    CONSTRAINT acidic_history_run_fk FOREIGN KEY (run_id) REFERENCES acidic_runs (id) ON DELETE CASCADE
);

CREATE INDEX acidic_history_run_idx ON acidic_history (run_id, id);

CREATE INDEX acidic_runs_due_idx ON acidic_runs (queue, run_at);

CREATE INDEX acidic_runs_finished_idx ON acidic_runs (finished_at);

CREATE INDEX acidic_runs_lock_idx ON acidic_runs (lock_expires_at);

CREATE TABLE acidic_signals (
    id BIGSERIAL NOT NULL,
    run_id BIGINT NOT NULL,
    name VARCHAR(255) NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT acidic_signals_run_fk FOREIGN KEY (run_id) REFERENCES acidic_runs (id) ON DELETE CASCADE
);

CREATE INDEX acidic_signals_run_idx ON acidic_signals (run_id, name, id);

CREATE INDEX acidic_runs_claim_idx ON acidic_runs (queue, priority DESC, run_at, id)
    WHERE status IN ('pending', 'scheduled');

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
    started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    heartbeat_at TIMESTAMP WITH TIME ZONE NOT NULL,
    gone_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (id)
);

CREATE INDEX acidic_workers_gone_idx ON acidic_workers (gone_at);

CREATE TABLE acidic_paused_queues (
    name VARCHAR(100) NOT NULL,
    paused_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (name)
);

CREATE FUNCTION acidic_notify_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('acidic_finished', NEW.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER acidic_runs_finished_trg
    AFTER UPDATE OF status ON acidic_runs
    FOR EACH ROW
    WHEN (NEW.status IN ('succeeded', 'failed', 'cancelled')
          AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION acidic_notify_finished();

CREATE INDEX acidic_runs_parent_idx ON acidic_runs (parent_id);

CREATE TABLE acidic_awaits (
    id BIGSERIAL NOT NULL,
    run_id BIGINT NOT NULL,
    awaited_key VARCHAR(255) NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT acidic_awaits_run_fk FOREIGN KEY (run_id) REFERENCES acidic_runs (id) ON DELETE CASCADE
);

CREATE INDEX acidic_awaits_run_idx ON acidic_awaits (run_id);

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

CREATE INDEX acidic_runs_executor_idx ON acidic_runs (executor, status);

CREATE INDEX acidic_runs_status_idx ON acidic_runs (status, id);

CREATE INDEX acidic_history_errored_idx ON acidic_history (at) WHERE event = 'errored';
