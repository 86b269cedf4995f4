-- acidic 0012: the search indexes of 0011 cost the write path less.
--
-- A GIN trigram index gets an entry per trigram of the value (dozens for a run's
-- arguments) at every insert and at every update that is not HOT, and a run's insert, its
-- claim and its end are not HOT: with the key and argument indexes of 0011 over every
-- run, each run of a worker grew the runs table's indexes by 3.7 kB instead of 1.4 kB
-- (docs/benchmarks.md). The key and argument indexes now leave out the runs in flight
-- (pending, running, scheduled): a run enters them when it stops being in flight (it
-- ends, fails, halts, awaits), once instead of three times. The runs in flight are found
-- through acidic_runs_in_flight_idx, a small index of their ids, and their keys and
-- arguments read from the table: a search stays an index search as long as the runs in
-- flight are not millions. The error index of 0011 (errors only) stays as it is.
CREATE INDEX acidic_runs_in_flight_idx ON acidic_runs (id)
    WHERE status IN ('pending', 'running', 'scheduled');
DO $$
DECLARE
    ext_schema TEXT;
BEGIN
    DROP INDEX IF EXISTS acidic_runs_key_trgm_idx;
    DROP INDEX IF EXISTS acidic_runs_args_trgm_idx;
    SELECT n.nspname INTO ext_schema FROM pg_extension AS e
        JOIN pg_namespace AS n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm';
    IF ext_schema IS NOT NULL THEN
        EXECUTE 'CREATE INDEX acidic_runs_key_trgm_idx ON acidic_runs USING gin (idempotency_key ' || quote_ident(ext_schema) || '.gin_trgm_ops) WHERE status NOT IN (''pending'', ''running'', ''scheduled'')';
        EXECUTE 'CREATE INDEX acidic_runs_args_trgm_idx ON acidic_runs USING gin (args ' || quote_ident(ext_schema) || '.gin_trgm_ops) WHERE status NOT IN (''pending'', ''running'', ''scheduled'')';
    END IF;
END
$$;
