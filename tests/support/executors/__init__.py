"""The App the executor tests hand to real Celery, RQ and Dramatiq workers."""
