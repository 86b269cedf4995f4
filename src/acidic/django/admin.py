"""acidic's runs in the Django admin.

A read-only list (filters: status, job, queue; search: key), a run page (arguments
and context redacted as the dashboard shows them, result, error, step history) and
the actions retry, resume and cancel, under the same rules as ``acidic runs``, for
staff holding the permission ``acidic.operate_run`` ("Can retry, resume and cancel
acidic runs"). Viewing needs ``acidic.view_run``.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse

from .._admin import OPERATIONS, Admin, fmt_duration, fmt_time, perform
from .._errors import AcidicError
from ._app import get_app
from .models import Run

__all__ = ["OPERATE_PERMISSION", "RunAdmin"]

#: The permission that allows the actions (retry, resume, cancel).
OPERATE_PERMISSION = "acidic.operate_run"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    """acidic's runs: read-only, with operator actions for ``acidic.operate_run``."""

    list_display = (
        "key",
        "job",
        "status",
        "queue",
        "attempts",
        "recovery_point",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "job", "queue")
    search_fields = ("key",)
    list_per_page = 50
    actions = ("retry_runs", "resume_runs", "cancel_runs")
    change_form_template = "admin/acidic/run/detail.html"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Whether the user may retry, resume and cancel runs."""
        return bool(request.user.is_staff and request.user.has_perm(OPERATE_PERMISSION))

    # -- actions on the list ----------------------------------------------------------

    def _act(self, request: HttpRequest, action: str, runs: QuerySet[Run]) -> None:
        app = get_app()
        done, refused = 0, []
        for key in runs.values_list("key", flat=True):
            try:
                perform(app, action, key)
                done += 1
            except AcidicError as exc:
                refused.append(str(exc))
        if done:
            self.message_user(request, f"{action}: {done} run(s)", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)

    @admin.action(description="Retry the selected failed runs", permissions=["operate"])
    def retry_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._act(request, "retry", queryset)

    @admin.action(description="Resume the selected runs", permissions=["operate"])
    def resume_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._act(request, "resume", queryset)

    @admin.action(description="Cancel the selected runs", permissions=["operate"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        self._act(request, "cancel", queryset)

    # -- the run page -----------------------------------------------------------------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = self.get_object(request, object_id)
        if run is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if request.method == "POST":
            action = request.POST.get("action", "")
            if action not in OPERATIONS or not self.has_operate_permission(request):
                raise PermissionDenied
            try:
                perform(get_app(), action, run.key)
                self.message_user(request, f"{action}: {run.key}", messages.SUCCESS)
            except AcidicError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(request.path)
        detail = Admin(get_app()).detail(run.key)
        if detail is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        summary = detail.summary
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Run {summary.key}",
            "original": run,
            "run": summary,
            "detail": detail,
            "args": _pretty(detail.args),
            "ctx": _pretty(detail.ctx),
            "result": _pretty(detail.result),
            "times": {
                "created": fmt_time(summary.created_at),
                "last run": fmt_time(summary.last_run_at),
                "finished": fmt_time(summary.finished_at),
                "due": fmt_time(summary.run_at),
            },
            "timeline": [
                {
                    "step": s.step,
                    "attempt": s.attempt,
                    "started": fmt_time(s.started_at),
                    "duration": fmt_duration(s.duration),
                    "outcome": s.outcome,
                    "error": None if s.error is None else f"{s.error.type}: {s.error.message}",
                }
                for s in detail.timeline
            ],
            "can_operate": self.has_operate_permission(request),
            "operations": OPERATIONS,
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.change_form_template, context)
