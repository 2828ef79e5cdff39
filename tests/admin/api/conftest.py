"""Fixtures for the JSON API: the app on a stub broker, tokens of each kind, tasks in two branches."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from scholarise.api_tokens import create_token
from scholarise.config import Settings
from scholarise.db import session_scope, upgrade
from scholarise.tasks import get_or_create_branch
from scholarise.users import create_user

PASSWORD = "correct horse battery staple 42"


@dataclass
class Tokens:
    admin: str
    north: str  # staff of the branch "North"
    south: str  # staff of the branch "South"
    north_id: int
    south_id: int


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def people(n: int, prefix: str = "person") -> list[dict[str, str]]:
    return [{"first_name": f"First{i}", "last_name": f"Last{i}", "email": f"{prefix}{i}@example.org"}
            for i in range(n)]


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file for the whole session; each test starts from a copy (faster than migrating)."""
    folder = tmp_path_factory.mktemp("api-template")
    upgrade(Settings(instance_path=folder))
    return folder / "scholarise.db"


@pytest.fixture
def migrated(settings: Settings, migrated_template: Path) -> Settings:
    """The shared ``migrated`` fixture, from the template copy (the SQLite settings only)."""
    settings.instance_path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_template, settings.instance_path / "scholarise.db")
    return settings


@pytest.fixture
def api_app(migrated: Settings, broker: dramatiq.Broker) -> Iterator[Flask]:
    """The whole web app (site and API) with the actors configured on a stub broker (no worker runs)."""
    from actors import services
    from admin import create_app

    app = create_app(migrated)
    app.config["TESTING"] = True
    yield app
    services.shutdown()  # GET /api/init initialises this process; leave it as the next test expects


@pytest.fixture
def client(api_app: Flask) -> FlaskClient:
    return api_app.test_client()


@pytest.fixture
def tokens(session_factory: sessionmaker[Session]) -> Tokens:
    with session_scope(session_factory) as session:
        north = get_or_create_branch(session, "North")
        south = get_or_create_branch(session, "South")
        admin = create_token(session, role="admin", name="tests admin")
        staff_north = create_token(session, role="staff", branch=north, name="north app")
        staff_south = create_token(session, role="staff", branch=south, name="south app")
        return Tokens(admin.secret, staff_north.secret, staff_south.secret, north.id, south.id)


@pytest.fixture
def make_task(broker: dramatiq.Broker) -> Callable[..., int]:
    """Create a task through the Python API (pending until a worker runs)."""
    import actors

    def make(branch: str = "North", n: int = 3, *, title: str = "Import", prefix: str | None = None,
             items: list[dict[str, Any]] | None = None) -> int:
        return actors.create_bulk_task("BULK_USER_CREATION", title, "", {
            "user_type": "teacher", "branch": branch,
            "items": items if items is not None else people(n, prefix or f"{branch.lower()}{title.lower()}"),
        }, created_by="tests")

    return make


@pytest.fixture
def finish(broker: dramatiq.Broker) -> Iterator[Callable[[int], dict[str, Any]]]:
    """Run workers until the task has finished; returns its summary. The worker starts on the first call,
    so a test can first change a pending task (cancel it, say) before anything processes it."""
    import actors
    from tests.conftest import drain

    workers: list[dramatiq.Worker] = []

    def run(task_id: int) -> dict[str, Any]:
        if not workers:
            workers.append(dramatiq.Worker(broker, worker_threads=2, worker_timeout=50))
            workers[0].start()
        drain(broker, workers[0])
        return actors.wait_for_task(task_id, timeout=30, poll=0.05)

    yield run
    for w in workers:
        w.stop()


@pytest.fixture
def signed_in(api_app: Flask, client: FlaskClient, session_factory: sessionmaker[Session]) -> Callable[..., str]:
    """Sign ``client`` in to the admin site (as admin or North staff); returns the page's CSRF token."""

    def sign_in(role: str = "admin") -> str:
        with session_scope(session_factory) as session:
            user = create_user(session, f"{role}-user@example.org", PASSWORD, role=role,
                               branch="North" if role == "staff" else None)
            user_id = user.id
        with client.session_transaction() as sess:
            sess["_user_id"] = str(user_id)
            sess["_fresh"] = True
        return csrf_token(api_app, client)

    return sign_in


def csrf_token(app: Flask, client: FlaskClient) -> str:
    """A valid CSRF token for ``client``'s session, made the way the site's pages make theirs."""
    from flask import session
    from flask_wtf.csrf import generate_csrf

    with client.session_transaction() as sess:
        existing = dict(sess)
    with app.test_request_context():
        session.update(existing)
        token = generate_csrf()
        raw = session["csrf_token"]
    with client.session_transaction() as sess:
        sess["csrf_token"] = raw
    return token
