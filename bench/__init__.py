"""acidic's benchmark: the cost of a durable step against raw SQL, DBOS and Procrastinate.

Run it with ``python -m bench`` (see docs/benchmarks.md). Not part of the library.
"""
