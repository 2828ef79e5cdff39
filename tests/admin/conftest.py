"""Fixtures for the admin site: the app, three accounts (admin, staff of two branches), their clients, tasks."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import generate_password_hash

from scholarise.config import Settings
from scholarise.db import session_scope
from tests.support.migrated import migrated_copy

PASSWORD = "correct-horse-battery-staple"
BRANCH_A, BRANCH_B = "North Campus", "South Campus"
ADMIN, STAFF_A, STAFF_B = "admin@school.example", "staff.a@school.example", "staff.b@school.example"
_CSRF = re.compile(r'name="csrf[-_]token"[^>]*(?:value|content)="([^"]+)"|content="([^"]+)"[^>]*name="csrf-token"')


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """scrypt costs ~0.3 s per hash; tests create many accounts, so they hash cheaply (still verified normally)."""
    import scholarise.users

    monkeypatch.setattr(scholarise.users, "generate_password_hash",
                        functools.partial(generate_password_hash, method="pbkdf2:sha256:1000"))


@dataclass(frozen=True)
class Accounts:
    admin_id: int
    staff_a_id: int
    staff_b_id: int
    branch_a: int
    branch_b: int


@pytest.fixture
def app(migrated: Settings) -> Iterator[Flask]:
    from admin import create_app

    application = create_app(migrated)
    application.config["TESTING"] = True
    yield application


@pytest.fixture
def migrated(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The suite's ``migrated``, as a copy of a database migrated once per session (an Alembic run is ~0.3 s)."""
    return migrated_copy(settings, tmp_path_factory)


def create_accounts(session_factory: sessionmaker[Session]) -> Accounts:
    """Branches A and B, an admin and one staff member of each branch."""
    from scholarise.tasks import get_or_create_branch
    from scholarise.users import create_user

    with session_scope(session_factory) as s:
        a, b = get_or_create_branch(s, BRANCH_A), get_or_create_branch(s, BRANCH_B)
        admin = create_user(s, ADMIN, PASSWORD, role="admin", name="Ada Admin")
        staff_a = create_user(s, STAFF_A, PASSWORD, role="staff", branch=a, name="Sam North")
        staff_b = create_user(s, STAFF_B, PASSWORD, role="staff", branch=b, name="Sue South")
        return Accounts(admin.id, staff_a.id, staff_b.id, a.id, b.id)


@pytest.fixture
def accounts(session_factory: sessionmaker[Session]) -> Accounts:
    return create_accounts(session_factory)


def csrf_token(html: str) -> str:
    """The CSRF token of a page (a form field or the header's meta tag)."""
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1) or match.group(2)


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD) -> FlaskClient:
    """Sign in through the real form (CSRF token included)."""
    token = csrf_token(client.get("/login").text)
    response = client.post("/login", data={"csrf_token": token, "email": email, "password": password})
    assert response.status_code == 302, response.text
    return client


def client_as(app: Flask, user_id: int | None) -> FlaskClient:
    """A client whose session already names ``user_id`` (skips the form; the loader still checks the account)."""
    client = app.test_client()
    if user_id is not None:
        with client.session_transaction() as session:
            session["_user_id"] = str(user_id)
            session["_fresh"] = True
    return client


def page_token(client: FlaskClient, url: str = "/admin/") -> str:
    return csrf_token(client.get(url).text)


@pytest.fixture
def admin_client(app: Flask, accounts: Accounts) -> FlaskClient:
    return client_as(app, accounts.admin_id)


@pytest.fixture
def staff_a_client(app: Flask, accounts: Accounts) -> FlaskClient:
    return client_as(app, accounts.staff_a_id)


@pytest.fixture
def staff_b_client(app: Flask, accounts: Accounts) -> FlaskClient:
    return client_as(app, accounts.staff_b_id)


def make_task(session_factory: sessionmaker[Session], branch_id: int, *, title: str = "Import teachers",
              rows: list[dict[str, str]] | None = None, status: str | None = None) -> int:
    """A task straight through the task service (no worker), optionally forced into a finished status."""
    from scholarise.models import BackgroundTask, ItemStatus, TaskItem, utcnow
    from scholarise.tasks import create_bulk_task

    items = rows or [{"first_name": "Ada", "last_name": "Lovelace", "email": f"ada{branch_id}-{title[:5]}@example.org"},
                     {"first_name": "", "last_name": "Nameless", "email": "not-an-email"}]
    with session_scope(session_factory) as s:
        task = create_bulk_task(s, "BULK_USER_CREATION", title, "from the tests",
                                {"user_type": "teacher", "branch_id": branch_id, "items": items}, created_by="tests")
        if status is not None:
            for item in s.query(TaskItem).filter_by(task_id=task.id, status=ItemStatus.PENDING):
                item.status, item.error_code, item.error_message = ItemStatus.FAILED, "provider_error", "Clerk said no"
                item.finished_at = utcnow()
            s.flush()
            t = s.get(BackgroundTask, task.id)
            t.status, t.finished_at, t.started_at = status, utcnow(), utcnow()
            t.processed, t.failed_count, t.progress = t.total, t.total, 100.0
        return task.id


class LiveServer:
    """The app on a real threaded HTTP server on 127.0.0.1 (a random free port), in a background thread."""

    def __init__(self, app: Flask) -> None:
        import threading

        from werkzeug.serving import make_server

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="live-server", daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._thread.join(10)
        self._server.server_close()
