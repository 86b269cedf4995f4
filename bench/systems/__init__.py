"""One module per system; each has ``run(mode, n, concurrency) -> Measurement``."""
