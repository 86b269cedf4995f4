"""Bulk actions in the dashboard: retry, resume or cancel every run the runs filter
selects.

``GET /runs/bulk?action=...&<filter>`` shows a confirmation that states how many runs
the action applies to (the filter narrowed to the statuses the action accepts) and
remembers the highest id among them: runs stored after the confirmation are left alone.
``POST /runs/bulk`` (CSRF-checked like every action) does one step of
:class:`acidic._admin.BulkAction`: batches of keys, each run through the single action,
until the step's time budget is spent. The page's script posts step after step and shows
progress; without JavaScript the result page has a "Continue" button until it is done.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._admin import OPERATIONS, BulkAction, BulkPlan, BulkStep
from .._errors import AcidicError, StorageError
from ._params import FILTER_FIELDS, filter_params, query_of, run_filter

if TYPE_CHECKING:
    from ._server import Dashboard

__all__ = ["MAX_SKIPPED_SHOWN", "STEP_BUDGET", "BulkPages"]

#: Seconds one POST works before it answers with its progress.
STEP_BUDGET = 2.0
#: Most skipped runs one answer lists (all are counted).
MAX_SKIPPED_SHOWN = 100
VERBS = {"retry": "Retry", "resume": "Resume", "cancel": "Cancel"}
DOING = {"retry": "Retrying", "resume": "Resuming", "cancel": "Cancelling"}
PAST = {"retry": "retried", "resume": "resumed", "cancel": "cancelled"}


def _int(value: str, default: int = 0) -> int:
    return int(value) if value.isdigit() else default


class BulkPages:
    """The confirmation and the steps of bulk actions, for one :class:`Dashboard`."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.d = dashboard

    async def confirm(self, request: Request) -> Response:
        if (refused := await self.d.access.guard(request)) is not None:
            return refused
        action = request.query_params.get("action", "")
        params = filter_params(request.query_params)
        if action not in OPERATIONS:
            return self.d.message(
                request, "Unknown action", f"The bulk actions are {', '.join(OPERATIONS)}.", 400
            )
        try:
            bulk = BulkAction(self.d.app, action, run_filter(params, args_jobs=self.d.searchable()))
            plan: BulkPlan = await run_in_threadpool(bulk.plan)
        except StorageError:
            raise
        except AcidicError as exc:
            return self.d.message(request, "Invalid filter", str(exc), 400)
        context = {
            "action": action,
            "verb": VERBS[action],
            "doing": DOING[action],
            "plan": plan,
            "params": params,
            "back": f"{self.d.base(request)}/runs?{query_of(params)}",
        }
        return self.d.page(request, "bulk_confirm.html", context)

    async def act(self, request: Request) -> Response:
        if (refused := await self.d.access.guard(request)) is not None:
            return refused
        fields = await self.d.access.form(request)
        if isinstance(fields, Response):
            return fields
        action = fields.get("action", "")
        if action not in OPERATIONS:
            return self.d.message(
                request, "Unknown action", f"The bulk actions are {', '.join(OPERATIONS)}.", 400
            )
        params = filter_params(fields)
        after, upto = _int(fields.get("after", "")), _int(fields.get("upto", ""))
        try:
            bulk = BulkAction(self.d.app, action, run_filter(params, args_jobs=self.d.searchable()))
            step: BulkStep = await run_in_threadpool(
                bulk.step, after=after, upto=upto, budget=STEP_BUDGET
            )
        except StorageError:
            raise
        except AcidicError as exc:
            if request.headers.get("x-acidic-bulk") == "1":
                return JSONResponse({"error": str(exc)}, status_code=409)
            return self.d.message(request, "Bulk action stopped", str(exc), 409)
        if request.headers.get("x-acidic-bulk") == "1":
            data = step.to_json()
            data["skipped"] = data["skipped"][:MAX_SKIPPED_SHOWN]
            data["skipped_count"] = len(step.skipped)
            return JSONResponse(data)
        # Without JavaScript: the totals so far travel in the form of the next step.
        done = _int(fields.get("done_so_far", "")) + step.done
        skipped = _int(fields.get("skipped_so_far", "")) + len(step.skipped)
        context = {
            "action": action,
            "verb": VERBS[action],
            "past": PAST[action],
            "params": params,
            "fields": FILTER_FIELDS,
            "expected": _int(fields.get("expected", "")),
            "upto": upto,
            "step": step,
            "done": done,
            "skipped": skipped,
            "shown": step.skipped[:MAX_SKIPPED_SHOWN],
            "back": f"{self.d.base(request)}/runs?{query_of(params)}",
        }
        return self.d.page(request, "bulk_result.html", context)
