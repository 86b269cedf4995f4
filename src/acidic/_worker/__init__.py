"""acidic's own executor: a worker process that claims due runs from the database, and
a supervisor that keeps several such processes alive (``--processes``)."""

from ._worker import EXIT_FORCED, EXIT_OK, Worker

__all__ = ["EXIT_FORCED", "EXIT_OK", "Worker"]
