"""The task list and detail pages, with their actions (cancel, retry, delete, download, live status).

Every query goes through the branch scope of :mod:`admin.auth`: staff only ever load tasks, rows
and log lines of their own branch, whether through the list, a filter, the detail page, a bulk
action, a download or the polled status. The actions call the task services (through
``actors`` where workers must be told), never change rows themselves.
"""

from __future__ import annotations

import io
import tempfile
from datetime import datetime
from typing import Any

from flask import abort, flash, jsonify, redirect, request, send_file, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import DateTimeBetweenFilter, FilterEqual, FilterLike
from flask_admin.model import typefmt
from werkzeug.exceptions import NotFound

from admin import formatting as fmt
from admin.auth import (
    SecureModelView,
    can_delete_task,
    get_visible_task,
    is_admin,
    scope_tasks,
    visible_task_ids,
    wants_json,
)
from admin.extensions import db
from admin.navigation import safe_next
from scholarise import activity
from scholarise import tasks as task_service
from scholarise.errors import ScholariseError
from scholarise.models import BackgroundTask, Branch, TaskExecutionLog, TaskItem, TaskStatus
from scholarise.schemas import USER_TYPES

ROWS_PER_PAGE = 100
TYPE_FORMATTERS = {**typefmt.BASE_FORMATTERS, datetime: fmt.fmt_datetime_type}
TASK_STATUS_OPTIONS = [(s, fmt.status_label(s)) for s in TaskStatus.ALL]
ITEM_STATUS_OPTIONS = [(s, fmt.status_label(s)) for s in ("pending", "processing", "created", "existing", "failed",
                                                          "cancelled")]


def task_json(task: BackgroundTask, principal: Any) -> dict[str, Any]:
    """What the header dropdown and the detail page poll: state, counts and the links this user may use."""
    finished = task.status in TaskStatus.FINISHED
    data = {
        "id": task.id, "title": task.title, "status": task.status, "status_label": fmt.status_label(task.status),
        "user_type": task.user_type, "branch": task.branch.name if task.branch else None,
        "progress": round(float(task.progress or 0.0), 1), "total": task.total, "processed": task.processed,
        "created": task.created_count, "existing": task.existing_count, "failed": task.failed_count,
        "cancelled": task.cancelled_count,
        "finished": finished, "duration": fmt.duration(task.duration_seconds),
        "detail_url": url_for("tasks.details_view", id=task.id),
        "results_url": url_for("tasks.results_csv", task_id=task.id),
        "delete_url": url_for("tasks.delete_task", task_id=task.id) if can_delete_task(principal, task) else None,
    }
    return data


class ScopedTaskQueries:
    """``get_query``/``get_count_query``/``get_one`` limited to the signed-in user's branch."""

    model: Any

    def _scope(self, query: Any) -> Any:
        if self.model is BackgroundTask:
            return scope_tasks(query, self.user)  # type: ignore[attr-defined]
        if is_admin(self.user):  # type: ignore[attr-defined]
            return query
        return query.where(self.model.task_id.in_(visible_task_ids(self.user)))  # type: ignore[attr-defined]

    def get_query(self) -> Any:
        return self._scope(super().get_query())  # type: ignore[misc]

    def get_count_query(self) -> Any:
        return self._scope(super().get_count_query())  # type: ignore[misc]

    def get_one(self, id: Any) -> Any:
        try:
            key = int(id)
        except (TypeError, ValueError):
            return None
        return self.get_query().where(self.model.id == key).one_or_none()


class ScopedView(ScopedTaskQueries, SecureModelView):
    allow_staff = True
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = False
    column_display_actions = False
    page_size = 50
    can_set_page_size = True
    column_type_formatters = TYPE_FORMATTERS


class BackgroundTaskView(ScopedView):
    list_template = "admin/tasks/list.html"
    details_template = "admin/tasks/details.html"
    can_view_details = False  # no eye icon: the title links to the detail page (``details_view`` below)
    column_list = ("id", "title", "user_type", "branch", "status", "progress", "total", "created_count",
                   "existing_count", "failed_count", "created_at", "finished_at")
    column_display_actions = False  # the title links to the detail page, where the actions are
    column_labels = {"id": "#", "user_type": "People", "created_count": "Created", "existing_count": "Existed",
                     "failed_count": "Failed", "total": "Rows", "created_at": "Submitted",
                     "finished_at": "Finished"}
    column_formatters = {"progress": fmt.fmt_progress, "status": fmt.fmt_status, "title": fmt.fmt_task_title,
                         "user_type": fmt.fmt_people}
    column_sortable_list = ("id", "title", "user_type", ("branch", "branch.name"), "status", "progress", "total",
                            "created_count", "existing_count", "failed_count", "created_at", "finished_at")
    column_filters = (
        FilterEqual(BackgroundTask.status, "Status", options=TASK_STATUS_OPTIONS),
        FilterEqual(BackgroundTask.user_type, "People", options=[(t, t.title() + "s") for t in USER_TYPES]),
        FilterEqual(BackgroundTask.type, "Type", options=[("BULK_USER_CREATION", "Bulk user creation")]),
        FilterLike(Branch.name, "Branch"),
        DateTimeBetweenFilter(BackgroundTask.created_at, "Created"),
        DateTimeBetweenFilter(BackgroundTask.finished_at, "Finished"),
    )
    column_searchable_list = ("title", "description", "created_by")
    column_default_sort = ("created_at", True)

    # -- detail ------------------------------------------------------------------------------

    @expose("/details/")
    def details_view(self) -> Any:
        task = self._task_or_404(request.args.get("id", ""))
        status = request.args.get("rows", "all")
        status = status if status in activity.ROW_FILTERS else "all"
        page = max(0, request.args.get("page", 0, type=int) or 0)
        rows, matching = activity.task_rows(db.session, task.id, status=status, offset=page * ROWS_PER_PAGE,
                                            limit=ROWS_PER_PAGE)
        return self.render(self.details_template, task=task, rows=rows, matching=matching, row_filter=status,
                           page=page, pages=max(1, -(-matching // ROWS_PER_PAGE)), per_page=ROWS_PER_PAGE,
                           log=activity.task_log(db.session, task.id), can_delete=can_delete_task(self.user, task),
                           retryable=task_service.retryable_count(db.session, task.id) > 0,
                           options=task.options or {})

    @expose("/<int:task_id>/status.json")
    def status_json(self, task_id: int) -> Any:
        return jsonify(task_json(self._task_or_404(task_id), self.user))

    @expose("/<int:task_id>/results.csv")
    def results_csv(self, task_id: int) -> Any:
        from scholarise.results import write_results_csv

        task = self._task_or_404(task_id)
        spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 - send_file closes it
        text = io.TextIOWrapper(spool, encoding="utf-8-sig", newline="")
        write_results_csv(db.session, task.id, text)
        text.flush()
        text.detach()
        spool.seek(0)
        return send_file(spool, mimetype="text/csv", as_attachment=True,
                         download_name=f"task-{task.id}-results.csv", max_age=0)

    # -- actions on one task -----------------------------------------------------------------------

    @expose("/<int:task_id>/cancel", methods=("POST",))
    def cancel_task(self, task_id: int) -> Any:
        import actors

        task_id = self._task_or_404(task_id).id
        return self._run(task_id, lambda: actors.cancel_task(task_id, by=self.user.email),
                         f"Task #{task_id} was cancelled. Rows already being processed finish first.")

    @expose("/<int:task_id>/retry", methods=("POST",))
    def retry_task(self, task_id: int) -> Any:
        import actors

        task_id = self._task_or_404(task_id).id
        return self._run(task_id, lambda: actors.retry_failed_rows(task_id, by=self.user.email),
                         f"{{}} rows of task #{task_id} were queued again.")

    @expose("/<int:task_id>/delete", methods=("POST",))
    def delete_task(self, task_id: int) -> Any:
        from scholarise.tasks import delete_task

        task = self._task_or_404(task_id)
        if not is_admin(self.user):
            abort(403)

        task_id = task.id

        def delete() -> None:
            delete_task(db.session, task_id)
            db.session.commit()

        return self._run(task_id, delete, f"Task #{task_id} and its rows were deleted.", gone=True)

    # -- bulk actions from the list ---------------------------------------------------------

    @action("cancel", "Cancel", "Cancel the selected tasks? Rows not yet processed will not be imported.")
    def action_cancel(self, ids: list[str]) -> None:
        import actors

        self._bulk(ids, lambda t: actors.cancel_task(t.id, by=self.user.email), "cancelled")

    @action("retry", "Retry failed rows", "Queue the failed rows of the selected tasks again?")
    def action_retry(self, ids: list[str]) -> None:
        import actors

        self._bulk(ids, lambda t: actors.retry_failed_rows(t.id, by=self.user.email), "queued again")

    @action("delete", "Delete", "Delete the selected finished tasks with all their rows? This cannot be undone.")
    def action_delete(self, ids: list[str]) -> None:
        from scholarise.tasks import delete_task

        def delete(task: BackgroundTask) -> None:
            delete_task(db.session, task.id)
            db.session.commit()

        self._bulk(ids, delete, "deleted")

    def is_action_allowed(self, name: str) -> bool:
        if name == "delete":
            return is_admin(self.user)
        return super().is_action_allowed(name)

    # -- helpers ------------------------------------------------------------------------------

    def _task_or_404(self, task_id: Any) -> BackgroundTask:
        try:
            return get_visible_task(db.session, self.user, int(task_id))
        except (ValueError, TypeError, ScholariseError):
            raise NotFound("There is no such task, or it belongs to another branch.") from None

    def _run(self, task_id: int, change: Any, message: str, *, gone: bool = False) -> Any:
        db.session.rollback()  # end the read transaction before a service opens its own (SQLite write lock)
        try:
            result = change()
        except ScholariseError as exc:
            db.session.rollback()
            return self._answer(False, str(exc), db.session.get(BackgroundTask, task_id), status=409)
        text = message.format(result) if "{}" in message else message
        return self._answer(True, text, None if gone else db.session.get(BackgroundTask, task_id))

    def _answer(self, ok: bool, message: str, task: BackgroundTask | None, *, status: int = 200) -> Any:
        if wants_json():
            body = {"ok": ok, "message": message, "task": task_json(task, self.user) if task else None}
            return jsonify(body), status
        flash(message, "success" if ok else "error")
        fallback = url_for(".details_view", id=task.id) if task else url_for(".index_view")
        return redirect(safe_next(request.form.get("next"), fallback))

    def _bulk(self, ids: list[str], change: Any, verb: str) -> None:
        done, problems = 0, []
        for raw in ids:
            task = self.get_one(raw)
            if task is None:
                problems.append(f"#{raw}: not found")
                continue
            if verb == "deleted" and not can_delete_task(self.user, task):
                problems.append(f"#{task.id}: only finished tasks can be deleted")
                continue
            task_id = task.id
            db.session.rollback()
            try:
                change(task)
                done += 1
            except ScholariseError as exc:
                db.session.rollback()
                problems.append(f"#{task_id}: {exc}")
        if done:
            flash(f"{done} task{'s' * (done != 1)} {verb}.", "success")
        if problems:
            flash("Not done — " + "; ".join(problems), "error")


class TaskItemView(ScopedView):
    column_list = ("task_id", "row_number", "email", "status", "external_user_id", "error_code", "error_message",
                   "attempts", "finished_at")
    column_labels = {"task_id": "Task", "row_number": "Line", "external_user_id": "Account id",
                     "error_code": "Error", "error_message": "Reason"}
    column_formatters = {"status": fmt.fmt_status, "task_id": fmt.fmt_task_link}
    column_filters = (
        FilterEqual(TaskItem.task_id, "Task #"),
        FilterEqual(TaskItem.status, "Status", options=ITEM_STATUS_OPTIONS),
        FilterLike(TaskItem.error_code, "Error code"),
    )
    column_searchable_list = ("email", "error_message")
    column_sortable_list = ("task_id", "row_number", "email", "status", "attempts", "finished_at")
    column_default_sort = [("task_id", True), ("row_number", False)]


class TaskExecutionLogView(ScopedView):
    column_list = ("task_id", "created_at", "level", "message")
    column_labels = {"task_id": "Task", "created_at": "Time"}
    column_formatters = {"level": fmt.fmt_status, "task_id": fmt.fmt_task_link}
    column_filters = (
        FilterEqual(TaskExecutionLog.task_id, "Task #"),
        FilterEqual(TaskExecutionLog.level, "Level", options=[(v, v.title()) for v in ("INFO", "WARNING", "ERROR")]),
    )
    column_searchable_list = ("message",)
    column_default_sort = ("created_at", True)
