"""Who may see and do what, for every route of the site (read from ``app.url_map``, so new ones are covered).

Four callers — anonymous, staff of branch A, staff of branch B, admin — hit every method of every
rule, with every argument pointing at branch A's task, row, log line or upload. A route whose
blueprint is not classified below fails the test until someone decides who may use it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import dramatiq
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.routing import Rule

from admin.uploads import UploadStore
from scholarise.db import session_scope
from scholarise.models import BackgroundTask, TaskExecutionLog, TaskItem
from tests.admin.conftest import Accounts, client_as, csrf_token, make_task

SECRET_TITLE = "NORTH-SECRET-import"
SECRET_EMAIL = "north.secret@example.org"
CSV = b"first_name,email\nNora,nora.upload@example.org\n"

# Who may use each blueprint (the part of the endpoint before the dot).
PUBLIC_ENDPOINTS = {"index", "signin.login", "signin.logout", "assets.static", "admin.static"}
STAFF_BLUEPRINTS = {"admin", "tasks", "task_items", "task_logs", "task_feed", "bulk_import"}
ADMIN_BLUEPRINTS = {"accounts", "branches", "teachers", "employees", "students", "services", "email_config"}
NOT_COVERED_HERE = ("/api/",)  # the JSON API's own matrix lives in tests/admin/api
# Routes about one task (or upload): another branch must get "not found", never the thing.
SCOPED_ONE = {"tasks.details_view", "tasks.status_json", "tasks.results_csv", "tasks.cancel_task",
              "tasks.retry_task", "tasks.delete_task"}
ADMIN_ONLY_ACTIONS = {"tasks.delete_task"}


@dataclass
class Target:
    task_id: int
    item_id: int
    log_id: int
    token: str = ""
    extra_tokens: dict[str, str] = field(default_factory=dict)


def _rules(app: Flask) -> list[Rule]:
    rules = [r for r in app.url_map.iter_rules() if not r.rule.startswith(NOT_COVERED_HERE)]
    return sorted(rules, key=lambda r: (r.endpoint == "signin.logout", r.rule))  # signing out goes last


def _classify(endpoint: str) -> str:
    if endpoint in PUBLIC_ENDPOINTS:
        return "public"
    blueprint = endpoint.split(".")[0]
    if blueprint in STAFF_BLUEPRINTS:
        return "staff"
    if blueprint in ADMIN_BLUEPRINTS:
        return "admin"
    raise AssertionError(f"route {endpoint!r} is not classified: add its blueprint to the authorization matrix")


def test_every_route_is_classified(app: Flask) -> None:
    for rule in _rules(app):
        _classify(rule.endpoint)


def _url(app: Flask, rule: Rule, target: Target) -> str:
    values: dict[str, Any] = {}
    for arg in rule.arguments:
        values[arg] = {"task_id": target.task_id, "user_type": "teacher", "token": target.token,
                       "export_type": "csv"}.get(arg, "x")
        if arg == "filename":
            values[arg] = "admin.css" if rule.endpoint == "assets.static" else \
                "bootstrap/bootstrap4/css/bootstrap.min.css"
    path = app.url_map.bind("localhost").build(rule.endpoint, values, force_external=False)
    blueprint = rule.endpoint.split(".")[0]
    record = {"task_items": target.item_id, "task_logs": target.log_id}.get(blueprint, target.task_id)
    if rule.endpoint.endswith((".details_view", ".edit_view")):
        path += f"?id={record}"
    elif blueprint == "email_config":
        path += "?branch=1"
    elif rule.endpoint.endswith(".index_view"):
        path += "?search=" + SECRET_TITLE[:5]
    return path


def _post_data(rule: Rule, target: Target, token: str) -> dict[str, Any]:
    blueprint = rule.endpoint.split(".")[0]
    record = {"task_items": target.item_id, "task_logs": target.log_id}.get(blueprint, target.task_id)
    return {"csrf_token": token, "id": str(record), "rowid": str(record), "action": "delete",
            "list_form_pk": str(record), "title": "changed"}


@dataclass
class Caller:
    name: str
    client: FlaskClient
    user_id: int | None
    token: str = ""


def _fresh_target(session_factory: sessionmaker[Session], app: Flask, branch_id: int, owner_id: int | None) -> Target:
    task_id = make_task(session_factory, branch_id, title=SECRET_TITLE,
                        rows=[{"first_name": "Nora", "email": SECRET_EMAIL}])
    with session_scope(session_factory) as s:
        item_id = s.scalar(select(TaskItem.id).where(TaskItem.task_id == task_id))
        log_id = s.scalar(select(TaskExecutionLog.id).where(TaskExecutionLog.task_id == task_id))
    token = ""
    if owner_id is not None:
        settings = app.extensions["scholarise_settings"]
        token = UploadStore(settings.instance_path / "uploads").save(
            io.BytesIO(CSV), max_bytes=10_000, owner_id=owner_id, user_type="teacher", filename="north.csv",
            branch=None, branch_id=branch_id, priority=5, title=SECRET_TITLE, encoding=None).token
    return Target(task_id, item_id, log_id, token)


def _call(caller: Caller, app: Flask, rule: Rule, method: str, target: Target):  # noqa: ANN202
    url = _url(app, rule, target)
    headers = {"Accept": "application/json"} if url.endswith(".json") or rule.endpoint == "task_feed.index" else {}
    if method == "GET":
        return url, caller.client.get(url, headers=headers)
    return url, caller.client.post(url, data=_post_data(rule, target, caller.token), headers=headers)


def _refused_to_anonymous(response) -> bool:  # noqa: ANN001
    if response.status_code == 401:
        return True
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


@pytest.fixture
def callers(app: Flask, accounts: Accounts) -> dict[str, Caller]:
    made = {
        "anonymous": Caller("anonymous", app.test_client(), None),
        "staff_b": Caller("staff_b", client_as(app, accounts.staff_b_id), accounts.staff_b_id),
        "staff_a": Caller("staff_a", client_as(app, accounts.staff_a_id), accounts.staff_a_id),
        "admin": Caller("admin", client_as(app, accounts.admin_id), accounts.admin_id),
    }
    for caller in made.values():
        caller.token = csrf_token(caller.client.get("/login" if caller.user_id is None else "/admin/").text)
    return made


def test_anonymous_callers_are_sent_to_sign_in_everywhere_but_the_public_routes(
        app: Flask, accounts: Accounts, callers: dict[str, Caller], session_factory: sessionmaker[Session]) -> None:
    caller = callers["anonymous"]
    target = _fresh_target(session_factory, app, accounts.branch_a, accounts.staff_a_id)
    for rule in _rules(app):
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            url, response = _call(caller, app, rule, method, target)
            assert response.status_code < 500, (method, url, response.status_code)
            if _classify(rule.endpoint) != "public":
                assert _refused_to_anonymous(response), (method, url, response.status_code)
                assert SECRET_TITLE not in response.text and SECRET_EMAIL not in response.text, (method, url)
    _assert_untouched(session_factory, app, target)


def test_staff_of_another_branch_can_neither_see_nor_change_branch_a(
        app: Flask, accounts: Accounts, callers: dict[str, Caller], broker: dramatiq.Broker,
        session_factory: sessionmaker[Session]) -> None:
    caller = callers["staff_b"]
    target = _fresh_target(session_factory, app, accounts.branch_a, accounts.staff_a_id)
    for rule in _rules(app):
        if rule.endpoint == "signin.logout":
            continue
        kind = _classify(rule.endpoint)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            url, response = _call(caller, app, rule, method, target)
            where = (method, url, response.status_code)
            assert response.status_code < 500, where
            assert response.status_code != 401 and not _refused_to_anonymous(response), where
            if kind == "admin":
                assert response.status_code == 403, where
            if rule.endpoint in SCOPED_ONE:
                assert response.status_code in (403, 404), where
            assert SECRET_TITLE not in response.text and SECRET_EMAIL not in response.text, where
            assert "nora.upload" not in response.text, where
    _assert_untouched(session_factory, app, target)


@pytest.mark.parametrize("who", ["staff_a", "admin"])
def test_staff_of_the_branch_and_admins_may_do_what_their_role_allows(
        app: Flask, accounts: Accounts, callers: dict[str, Caller], broker: dramatiq.Broker,
        session_factory: sessionmaker[Session], who: str) -> None:
    caller = callers[who]
    shared = _fresh_target(session_factory, app, accounts.branch_a, caller.user_id)
    for rule in _rules(app):
        kind = _classify(rule.endpoint)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            # Anything that changes a task or an upload gets its own, so the others still find theirs.
            target = shared if method == "GET" else _fresh_target(session_factory, app, accounts.branch_a,
                                                                  caller.user_id)
            url, response = _call(caller, app, rule, method, target)
            where = (method, url, response.status_code)
            assert response.status_code < 500, where
            assert kind == "public" or not _refused_to_anonymous(response), where
            if kind == "admin" and who == "staff_a":
                assert response.status_code == 403, where
            elif rule.endpoint in ADMIN_ONLY_ACTIONS and who == "staff_a":
                assert response.status_code == 403, where
            elif kind in ("staff", "admin"):
                assert response.status_code != 403, where
            if rule.endpoint in SCOPED_ONE and not (rule.endpoint in ADMIN_ONLY_ACTIONS and who == "staff_a"):
                assert response.status_code in (200, 302), where
    if who == "staff_a":
        with session_scope(session_factory) as s:
            assert s.get(BackgroundTask, shared.task_id) is not None


def test_staff_see_their_own_branch_task_in_full(app: Flask, accounts: Accounts, callers: dict[str, Caller],
                                                 session_factory: sessionmaker[Session]) -> None:
    target = _fresh_target(session_factory, app, accounts.branch_a, None)
    client = callers["staff_a"].client
    assert SECRET_TITLE in client.get(f"/admin/tasks/details/?id={target.task_id}").text
    assert SECRET_EMAIL in client.get(f"/admin/tasks/{target.task_id}/results.csv").text
    assert SECRET_TITLE in client.get("/admin/feed/").text
    assert SECRET_EMAIL in client.get("/admin/task_items/").text


def _assert_untouched(session_factory: sessionmaker[Session], app: Flask, target: Target) -> None:
    with session_scope(session_factory) as s:
        task = s.get(BackgroundTask, target.task_id)
        assert task is not None and task.status == "PENDING" and task.title == SECRET_TITLE
    settings = app.extensions["scholarise_settings"]
    assert UploadStore(settings.instance_path / "uploads").load(target.token, owner_id=_owner(target, settings))


def _owner(target: Target, settings: Any) -> int:
    import json

    return int(json.loads((settings.instance_path / "uploads" / f"{target.token}.json").read_text())["owner_id"])
