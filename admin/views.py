"""Flask-Admin model views: declarative attributes only; actions call services."""

from __future__ import annotations

from typing import Any

from flask_admin import Admin
from flask_admin.contrib.sqla import ModelView
from markupsafe import Markup, escape

from scholarise.models import BackgroundTask, Branch, Employee, Student, TaskExecutionLog, TaskItem, Teacher


def _progress(view: Any, context: Any, model: BackgroundTask, name: str) -> Markup:
    pct = max(0.0, min(100.0, model.progress or 0.0))
    return Markup(
        f'<div class="progress" style="min-width:8em" title="{pct:.0f} %">'
        f'<div class="progress-bar" role="progressbar" style="width:{pct:.0f}%">{pct:.0f} %</div></div>'
    )


def _status(view: Any, context: Any, model: BackgroundTask, name: str) -> Markup:
    colours = {"COMPLETED": "success", "COMPLETED_WITH_ERRORS": "warning", "FAILED": "danger",
               "CANCELLED": "secondary", "RUNNING": "primary", "PENDING": "info"}
    return Markup(f'<span class="badge bg-{colours.get(model.status, "light")}">'
                  f'{escape(model.status.replace("_", " ").lower())}</span>')


class ReadOnlyView(ModelView):
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    page_size = 50


class BackgroundTaskView(ReadOnlyView):
    column_list = ("id", "title", "user_type", "branch", "status", "priority", "progress", "created_count",
                   "existing_count", "failed_count", "total", "created_at", "finished_at")
    column_labels = {"created_count": "Created", "existing_count": "Existed", "failed_count": "Failed"}
    column_formatters = {"progress": _progress, "status": _status}
    column_filters = ("status", "user_type", "priority", "created_at")
    column_searchable_list = ("title",)
    column_default_sort = ("created_at", True)


class TaskItemView(ReadOnlyView):
    column_list = ("task_id", "row_number", "email", "status", "external_user_id", "error_code", "error_message")
    column_filters = ("task_id", "status", "error_code")
    column_searchable_list = ("email",)
    column_default_sort = ("row_number", False)


class TaskExecutionLogView(ReadOnlyView):
    column_list = ("task_id", "created_at", "level", "message")
    column_filters = ("task_id", "level")
    column_default_sort = ("created_at", True)


class PersonView(ReadOnlyView):
    column_list = ("first_name", "last_name", "email", "branch", "external_user_id", "created_at")
    column_searchable_list = ("first_name", "last_name", "email")


def register_views(site: Admin, db: Any) -> None:
    site.add_view(BackgroundTaskView(BackgroundTask, db, name="Tasks", endpoint="tasks"))
    site.add_view(TaskItemView(TaskItem, db, name="Rows", endpoint="task_items"))
    site.add_view(TaskExecutionLogView(TaskExecutionLog, db, name="Execution log", endpoint="task_logs"))
    site.add_view(PersonView(Teacher, db, name="Teachers", endpoint="teachers", category="People"))
    site.add_view(PersonView(Employee, db, name="Employees", endpoint="employees", category="People"))
    site.add_view(PersonView(Student, db, name="Students", endpoint="students", category="People"))
    site.add_view(ReadOnlyView(Branch, db, name="Branches", endpoint="branches", category="People"))
