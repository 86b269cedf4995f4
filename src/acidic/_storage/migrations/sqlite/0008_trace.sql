-- acidic 0008: the trace context of the code that enqueued a run.
-- traceparent: the W3C traceparent header of the caller of app.enqueue (NULL without
-- telemetry), so that the worker's span of the run continues the caller's trace.
ALTER TABLE acidic_runs ADD COLUMN traceparent VARCHAR(255);
