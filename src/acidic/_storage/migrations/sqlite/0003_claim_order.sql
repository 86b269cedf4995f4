-- acidic 0003: due runs in the order workers claim them.
-- A claim takes a queue's due runs by priority (highest first), then run_at, then enqueue
-- order. Without an index in that order the database fetched and sorted every due run of
-- the queue at each claim: about 80 ms per claim with 100,000 runs waiting. Here a claim
-- reads the first rows of the index and stops. Partial: only waiting runs are in it.
CREATE INDEX acidic_runs_claim_idx ON acidic_runs (queue, priority DESC, run_at, id)
    WHERE status IN ('pending', 'scheduled');
