"""Who may see and do what: sign-in sessions, roles and branch scope, for every view and blueprint.

Two roles (:class:`scholarise.models.Role`): *admin* sees and does everything; *staff* import and
see the tasks of their own branch only. The checks here take any *principal* with ``role`` and
``branch_id`` attributes, so a signed-in :class:`CurrentUser` and an API token are judged by the
same rules. A task outside the principal's scope is reported as not found (404), never as
forbidden, so its existence does not leak to another branch.

Flask-Admin views inherit :class:`AdminAccessMixin` (via ``SecurePage``/``SecureModelView`` /
``SecureIndexView``); plain Flask views use :func:`login_required_json` / :func:`require_admin`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, Protocol, TypeVar

from flask import Flask, abort, jsonify, redirect, request, url_for
from flask_admin import AdminIndexView, BaseView
from flask_admin.contrib.sqla import ModelView
from flask_login import UserMixin, current_user
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from admin.extensions import db, login_manager
from scholarise.errors import NotFoundError
from scholarise.models import AdminUser, BackgroundTask, Role, TaskStatus

F = TypeVar("F", bound=Callable[..., Any])


class Principal(Protocol):
    role: str
    branch_id: int | None


@dataclass(frozen=True)
class CurrentUser(UserMixin):  # type: ignore[misc]
    """The signed-in person, copied out of the database row at the start of each request."""

    id: int
    email: str
    name: str
    role: str
    branch_id: int | None
    branch_name: str | None

    @classmethod
    def from_model(cls, user: AdminUser) -> CurrentUser:
        return cls(user.id, user.email, user.name, user.role, user.branch_id, user.branch.name if user.branch else None)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def display_name(self) -> str:
        return self.name or self.email

    def get_id(self) -> str:
        return str(self.id)


def init_auth(app: Flask) -> None:
    """Bind Flask-Login: sessions name an account id, reloaded (and re-checked for ``active``) per request."""
    login_manager.init_app(app)
    login_manager.login_view = "signin.login"
    login_manager.login_message = "Please sign in to see that page."
    login_manager.login_message_category = "info"
    login_manager.session_protection = "basic"
    login_manager.user_loader(_load_user)
    login_manager.unauthorized_handler(_unauthorized)


def _load_user(user_id: str) -> CurrentUser | None:
    from scholarise.users import active_user

    if not user_id.isdigit():
        return None
    user = active_user(db.session, int(user_id))
    return CurrentUser.from_model(user) if user is not None else None


def wants_json() -> bool:
    """True for the polled JSON endpoints (and API-style clients): they get 401/403 bodies, not redirects."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])  # ties (*/*) go to HTML
    return best == "application/json" or request.path.endswith(".json") or request.path.startswith("/api/")


def _unauthorized() -> Any:
    if wants_json():
        return jsonify(error="unauthorized", message="Sign in first."), 401
    return redirect(url_for("signin.login", next=request.full_path.rstrip("?")))


def signed_in() -> CurrentUser | None:
    """The signed-in user of this request, or None."""
    return current_user if current_user.is_authenticated else None  # type: ignore[return-value]


# -- rules -------------------------------------------------------------------------------------


def is_admin(principal: Principal | None) -> bool:
    return principal is not None and principal.role == Role.ADMIN


def can_see_task(principal: Principal | None, task: BackgroundTask) -> bool:
    """Admins see every task; staff only those of their own branch."""
    if principal is None:
        return False
    return is_admin(principal) or (principal.branch_id is not None and task.branch_id == principal.branch_id)


def can_manage_task(principal: Principal | None, task: BackgroundTask) -> bool:
    """Cancel, retry failed rows and download results: whoever can see the task."""
    return can_see_task(principal, task)


def can_delete_task(principal: Principal | None, task: BackgroundTask) -> bool:
    """Only admins delete, and only finished tasks."""
    return is_admin(principal) and task.status in TaskStatus.FINISHED


def branch_scope(principal: Principal) -> int | None:
    """The branch a principal is limited to, or None for all branches (admins)."""
    if is_admin(principal):
        return None
    if principal.branch_id is None:  # a staff account without a branch sees nothing
        return -1
    return principal.branch_id


def scope_tasks(query: Any, principal: Principal) -> Any:
    """Limit a ``select()`` (or legacy Query) over BackgroundTask to what ``principal`` may see."""
    branch_id = branch_scope(principal)
    return query if branch_id is None else query.where(BackgroundTask.branch_id == branch_id)


def visible_task_ids(principal: Principal) -> Select[tuple[int]]:
    """A subquery of the task ids ``principal`` may see (for item and log queries)."""
    return scope_tasks(select(BackgroundTask.id), principal)


def get_visible_task(session: Session, principal: Principal, task_id: int) -> BackgroundTask:
    """The task, if it exists and ``principal`` may see it.

    Raises:
        NotFoundError: no such task, or one of another branch (the same answer on purpose).
    """
    task = session.get(BackgroundTask, task_id)
    if task is None or not can_see_task(principal, task):
        raise NotFoundError(f"There is no task #{task_id}.")
    return task


# -- decorators for plain Flask views ------------------------------------------------------------


def login_required_json(view: F) -> F:
    """Signed-in users only; anonymous callers get 401 JSON or a redirect to the sign-in page."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if signed_in() is None:
            return _unauthorized()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def require_admin(view: F) -> F:
    """Admins only: anonymous callers are sent to sign in, staff get 403."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user = signed_in()
        if user is None:
            return _unauthorized()
        if not user.is_admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# -- Flask-Admin ---------------------------------------------------------------------------------


class AdminAccessMixin:
    """Every Flask-Admin view inherits this: signed in, and admin unless the view allows staff."""

    allow_staff = False

    def is_accessible(self) -> bool:
        user = signed_in()
        return user is not None and (user.is_admin or self.allow_staff)

    def inaccessible_callback(self, name: str, **kwargs: Any) -> Any:
        if signed_in() is None:
            return _unauthorized()
        return abort(403)

    @property
    def user(self) -> CurrentUser:
        return current_user  # type: ignore[return-value]


class SecurePage(AdminAccessMixin, BaseView):
    """A custom page of the admin site (admins only unless ``allow_staff``)."""


class SecureIndexView(AdminAccessMixin, AdminIndexView):
    allow_staff = True


class SecureModelView(AdminAccessMixin, ModelView):
    """A model view; subclasses that allow staff must scope ``get_query``/``get_count_query``/``get_one``."""
