-- acidic 0010: the reads of the dashboard and `acidic runs` on a big table.
-- Runs by status in id order: the runs list filtered by status (newest first), the count of
-- a bulk action's runs and its batches, the runs of a rare status (halted, running) without
-- reading the others. Step errors by time: the overview's error chart, without reading
-- every history event. Partial: only errored events are in it.
CREATE INDEX acidic_runs_status_idx ON acidic_runs (status, id);
CREATE INDEX acidic_history_errored_idx ON acidic_history (at) WHERE event = 'errored';
