-- acidic 0013: a finished run's announcement names its table.
-- A NOTIFY channel belongs to the whole database: app.wait in an App of another schema (a
-- schema per tenant) heard every run finishing there, and runs of different schemas share
-- ids. The payload is now <table oid>:<run id>; a waiter keeps only its own table's ids.
CREATE OR REPLACE FUNCTION acidic_notify_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('acidic_finished', TG_RELID::text || ':' || NEW.id::text);
    RETURN NULL;
END
$$;
