-- acidic 0008: the trace context of the code that enqueued a run.
-- traceparent: the W3C traceparent header of the caller of app.enqueue (NULL without
-- telemetry), so that the worker's span of the run continues the caller's trace.
-- MySQL/MariaDB DDL is not transactional: the statement can be re-run safely.
ALTER TABLE acidic_runs ADD COLUMN IF NOT EXISTS traceparent VARCHAR(255);
