"""The executor port shared by the queue adapters (:mod:`acidic.celery`,
:mod:`acidic.rq`, :mod:`acidic.dramatiq`)."""

from ._base import DEFAULT_GRACE, Executor

__all__ = ["DEFAULT_GRACE", "Executor"]
