-- acidic 0011: the dashboard's reads on a million runs within 200 ms (see docs/dashboard.md).
--
-- Claims and ends change indexed columns (status, lock expiry), so those updates are not
-- HOT and add an entry to every full index of the table (a worker's step writes mostly are
-- HOT: they leave the lock alone until half of it is spent). The indexes below are
-- therefore partial where they can be, or replace an index rather than add one, and index
-- no column a step's write changes.
--
-- Finished runs by end time, with the columns the overview's chart and the per-job
-- statistics read (status, job; the last claim for durations): read from the index alone.
-- Partial: a run enters it once, when it ends, instead of at every update in flight.
-- It replaces the plain index of 0002 (prune reads it the same way).
DROP INDEX acidic_runs_finished_idx;
CREATE INDEX acidic_runs_finished_idx ON acidic_runs (finished_at, status, job)
    INCLUDE (last_run_at) WHERE finished_at IS NOT NULL;
-- Runs by status (0010) carry the queue, the job and the last claim: counts by queue and
-- status of the open statuses, and failed runs per job over a window, from the index
-- alone. Same entries as before, only wider.
DROP INDEX acidic_runs_status_idx;
CREATE INDEX acidic_runs_status_idx ON acidic_runs (status, id)
    INCLUDE (queue, job, last_run_at);
-- "Active since" (`--since`, the runs page's "since" filter, the HTTP layer's expiry): the
-- time a run was last active, as the queries write it.
CREATE INDEX acidic_runs_active_idx ON acidic_runs
    ((COALESCE(finished_at, last_run_at, created_at)));
-- Search by substring of the key, the arguments or the error: trigram indexes, when the
-- pg_trgm extension exists or can be created (a trusted extension from PostgreSQL 13: a
-- database owner may create it), in the public schema if allowed (a schema dropped later
-- must not take it along), else in the current one. Without it, search reads the table,
-- and nothing fails. The operator class is named with the extension's schema, which may
-- not be on the search path.
DO $$
DECLARE
    ext_schema TEXT;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public;
        EXCEPTION WHEN OTHERS THEN
            BEGIN
                CREATE EXTENSION IF NOT EXISTS pg_trgm;
            EXCEPTION WHEN OTHERS THEN
                NULL;
            END;
        END;
    END IF;
    SELECT n.nspname INTO ext_schema FROM pg_extension AS e
        JOIN pg_namespace AS n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm';
    IF ext_schema IS NOT NULL THEN
        EXECUTE 'CREATE INDEX acidic_runs_key_trgm_idx ON acidic_runs USING gin (idempotency_key ' || quote_ident(ext_schema) || '.gin_trgm_ops)';
        EXECUTE 'CREATE INDEX acidic_runs_args_trgm_idx ON acidic_runs USING gin (args ' || quote_ident(ext_schema) || '.gin_trgm_ops)';
        EXECUTE 'CREATE INDEX acidic_runs_error_trgm_idx ON acidic_runs USING gin (error ' || quote_ident(ext_schema) || '.gin_trgm_ops) WHERE error IS NOT NULL';
    END IF;
END
$$;
