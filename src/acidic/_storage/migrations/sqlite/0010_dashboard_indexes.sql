-- acidic 0010: the reads of the dashboard on a big table.
-- Step errors by time: the overview's error chart, without reading every history event.
-- Partial: only errored events are in it. (No index of runs by status here: SQLite plans
-- without statistics and could take it for the claims of 0003.)
CREATE INDEX acidic_history_errored_idx ON acidic_history (at) WHERE event = 'errored';
