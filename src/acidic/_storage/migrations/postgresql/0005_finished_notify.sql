-- acidic 0005: tell waiters (app.wait) the moment a run finishes.
-- A trigger, not a statement of acidic's own: the NOTIFY rides on the transaction that
-- finishes the run (delivered when it commits), and costs no round trip. The payload is
-- the run's id; app.wait listens on acidic_finished and re-reads its run when it hears it.
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
