"""Flask-Admin views: declarative model views, plus ``register_views`` that builds the whole site's menu.

Task views (branch-scoped, open to staff) live in :mod:`admin.task_views`; the custom pages in
their own modules. Everything here is admins-only and read-only: people come from imports and
accounts from ``scholarise create-admin`` / ``scholarise users create``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_admin import Admin
from flask_admin.contrib.sqla.filters import FilterEqual
from flask_admin.model import typefmt

from admin import formatting as fmt
from admin.auth import SecureModelView
from admin.email_page import EmailConfigPage
from admin.extensions import db
from admin.feed import TaskFeed
from admin.import_page import ImportPage
from admin.services_page import ServicesPage
from admin.task_views import BackgroundTaskView, TaskExecutionLogView, TaskItemView
from scholarise.models import (
    AdminUser,
    BackgroundTask,
    Branch,
    Employee,
    Role,
    Student,
    TaskExecutionLog,
    TaskItem,
    Teacher,
)


class ReadOnlyView(SecureModelView):
    can_create = False
    can_edit = False
    can_delete = False
    can_view_details = True
    page_size = 50
    can_set_page_size = True
    column_type_formatters = {**typefmt.BASE_FORMATTERS, datetime: fmt.fmt_datetime_type}
    column_type_formatters_detail = {**typefmt.DETAIL_FORMATTERS, datetime: fmt.fmt_datetime_type}


def _branch_name(view: Any, context: Any, model: Any, name: str) -> str:
    """The branch's name, not its number (the session's identity map makes this one query per branch)."""
    branch = db.session.get(Branch, model.branch_id)
    return branch.name if branch else f"#{model.branch_id}"


class PersonView(ReadOnlyView):
    column_list = ("first_name", "last_name", "email", "branch_id", "external_user_id", "created_at")
    column_labels = {"branch_id": "Branch", "external_user_id": "Account id"}
    column_formatters = {"branch_id": _branch_name}
    column_formatters_detail = {"branch_id": _branch_name}
    column_searchable_list = ("first_name", "last_name", "email")
    column_default_sort = ("created_at", True)


class BranchView(ReadOnlyView):
    column_list = ("id", "name", "created_at")
    column_searchable_list = ("name",)


class AdminUserView(ReadOnlyView):
    """Accounts of this site. Never lists the password hash."""

    column_list = ("email", "name", "role", "branch", "active", "last_login_at", "created_at")
    column_details_list = column_list + ("password_changed_at",)
    column_labels = {"last_login_at": "Last sign-in"}
    column_filters = (FilterEqual(AdminUser.role, "Role", options=[(r, r.title()) for r in Role.ALL]),)
    column_searchable_list = ("email", "name")
    column_default_sort = "email"


def register_views(site: Admin, db: Any) -> None:
    """Every view and page of the site, in menu order."""
    site.add_view(BackgroundTaskView(BackgroundTask, db, name="Tasks", endpoint="tasks", url="tasks"))
    site.add_view(ImportPage(name="Import", endpoint="bulk_import", url="import"))
    site.add_view(TaskItemView(TaskItem, db, name="Rows", endpoint="task_items", category="Task details"))
    site.add_view(TaskExecutionLogView(TaskExecutionLog, db, name="Execution log", endpoint="task_logs",
                                       category="Task details"))
    site.add_view(PersonView(Teacher, db, name="Teachers", endpoint="teachers", category="People"))
    site.add_view(PersonView(Employee, db, name="Employees", endpoint="employees", category="People"))
    site.add_view(PersonView(Student, db, name="Students", endpoint="students", category="People"))
    site.add_view(BranchView(Branch, db, name="Branches", endpoint="branches", category="People"))
    site.add_view(ServicesPage(name="Background services", endpoint="services", category="Settings",
                               url="/settings/background-services"))
    site.add_view(EmailConfigPage(name="Email", endpoint="email_config", category="Settings",
                                  url="/settings/email-config"))
    site.add_view(AdminUserView(AdminUser, db, name="Accounts", endpoint="accounts", category="Settings"))
    site.add_view(TaskFeed(name="Task feed", endpoint="task_feed", url="feed"))
