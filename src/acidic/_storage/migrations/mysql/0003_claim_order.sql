-- acidic 0003: due runs in the order workers claim them.
-- A claim takes a queue's due runs by priority (highest first), then run_at, then enqueue
-- order. Without an index in that order the database fetched and sorted every due run of
-- the queue at each claim: about 115 ms per claim with 100,000 runs waiting. MariaDB and
-- MySQL have no partial indexes (PostgreSQL and SQLite index only the waiting runs): the
-- status leads, and a claim reads each waiting status in this order and stops at the limit.
CREATE INDEX IF NOT EXISTS acidic_runs_claim_idx ON acidic_runs (queue, status, priority DESC, run_at, id);
