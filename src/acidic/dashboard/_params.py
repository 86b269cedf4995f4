"""The runs filter as the dashboard's forms and links carry it: query parameters
``status``, ``job``, ``queue`` (``-`` for inline runs), ``q`` (search in keys,
arguments and errors), ``since`` (``1h``, ``24h``, ``7d``) and ``only`` (``due``,
``orphaned``, ``unknown_job``: runs due now, running runs whose owner is gone, due runs no
live worker knows)."""

from __future__ import annotations

import datetime as dt
import urllib.parse
from collections.abc import Mapping

from .._admin import RunFilter
from ._charts import SINCE

__all__ = ["FILTER_FIELDS", "ONLY", "filter_params", "query_of", "run_filter"]

#: The parameters that make up a runs filter.
FILTER_FIELDS = ("status", "job", "queue", "q", "since", "only")
#: The values of ``only``, with their labels.
ONLY = {"due": "due now", "orphaned": "orphaned", "unknown_job": "no live worker knows the job"}


def filter_params(values: Mapping[str, str]) -> dict[str, str]:
    """The filter's parameters from a query or a form (absent ones empty)."""
    params = {name: str(values.get(name, "")) for name in FILTER_FIELDS}
    params["q"] = params["q"].strip()
    return params


def run_filter(
    params: Mapping[str, str],
    *,
    args_jobs: tuple[str, ...] | None,
    now: dt.datetime | None = None,
) -> RunFilter:
    """The :class:`RunFilter` the parameters ask for (raises
    :class:`acidic.InvalidArgumentError` for an unknown status). The search looks in
    the arguments of ``args_jobs`` only (None: every job's)."""
    status, job, queue = params["status"], params["job"], params["queue"]
    since = params["since"]
    now = now or dt.datetime.now(dt.UTC)
    return RunFilter(
        statuses=(status,) if status else (),
        jobs=(job,) if job else (),
        queues=((None if queue == "-" else queue),) if queue else (),
        text=params["q"] or None,
        text_args_jobs=args_jobs,
        due=params["only"] == "due",
        orphaned=params["only"] == "orphaned",
        unknown_job=params["only"] == "unknown_job",
        since=now - SINCE[since] if since in SINCE else None,
    )


def query_of(params: Mapping[str, str], **more: str) -> str:
    """The filter (and ``more``) as a query string, empty values left out."""
    return urllib.parse.urlencode({k: v for k, v in {**params, **more}.items() if v})
