"""``/api/tasks``: each operation's answer, and its refusals (role, branch, bad input, state, size)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from scholarise.db import session_scope
from scholarise.models import BackgroundTask, Branch, TaskItem
from tests.admin.api.conftest import Tokens, bearer, people
from tests.admin.api.test_auth import assert_envelope

CSV = b"first_name,last_name,email\nAda,Lovelace,ada@example.org\nAlan,Turing,alan@example.org\n,NoName,bad\n"


def upload(client: FlaskClient, token: str, content: bytes = CSV, **fields: Any):
    data = {"user_type": "teacher", **fields, "file": (io.BytesIO(content), "teachers.csv")}
    return client.post("/api/tasks/upload", data=data, content_type="multipart/form-data", headers=bearer(token))


def count(session_factory: sessionmaker[Session], model: type) -> int:
    with session_scope(session_factory) as session:
        return session.query(model).count()


# -- list ----------------------------------------------------------------------------------------


def test_an_admin_lists_every_branchs_tasks_newest_first(client: FlaskClient, tokens: Tokens,
                                                         make_task: Callable[..., int]) -> None:
    first, second = make_task("North", title="A"), make_task("South", title="B")
    body = client.get("/api/tasks", headers=bearer(tokens.admin)).get_json()
    assert [t["id"] for t in body["items"]] == [second, first]
    assert body["total"] == 2 and body["page"] == 1 and body["pages"] == 1
    task = body["items"][0]
    assert task["branch"] == "South" and task["status"] == "PENDING" and task["total"] == 3
    assert task["created"] == task["existing"] == task["failed"] == 0


def test_staff_list_only_their_own_branch(client: FlaskClient, tokens: Tokens, make_task: Callable[..., int]) -> None:
    north = make_task("North", title="A")
    make_task("South", title="B")
    body = client.get("/api/tasks", headers=bearer(tokens.north)).get_json()
    assert [t["id"] for t in body["items"]] == [north]
    assert body["total"] == 1


def test_staff_asking_for_another_branch_are_refused(client: FlaskClient, tokens: Tokens) -> None:
    response = client.get(f"/api/tasks?branch_id={tokens.south_id}", headers=bearer(tokens.north))
    assert_envelope(response, 403, "forbidden")
    assert client.get(f"/api/tasks?branch_id={tokens.north_id}", headers=bearer(tokens.north)).status_code == 200


def test_the_list_filters_by_status_type_branch_and_pages(client: FlaskClient, tokens: Tokens,
                                                          make_task: Callable[..., int]) -> None:
    ids = [make_task("North", title=f"T{i}") for i in range(3)]
    south = make_task("South", title="S")
    client.post(f"/api/tasks/{ids[0]}/cancel", headers=bearer(tokens.admin))
    get = lambda q: client.get(f"/api/tasks?{q}", headers=bearer(tokens.admin)).get_json()  # noqa: E731
    assert [t["id"] for t in get("status=CANCELLED")["items"]] == [ids[0]]
    assert [t["id"] for t in get(f"branch_id={tokens.south_id}")["items"]] == [south]
    assert get("type=BULK_USER_CREATION")["total"] == 4
    assert get("user_type=student")["total"] == 0
    page = get("per_page=2&page=2")
    assert [t["id"] for t in page["items"]] == [ids[1], ids[0]] and page["pages"] == 2


def test_bad_list_filters_are_refused_with_field_errors(client: FlaskClient, tokens: Tokens) -> None:
    body = assert_envelope(client.get("/api/tasks?status=DONE&per_page=0", headers=bearer(tokens.admin)),
                           422, "invalid_input")
    assert set(body["errors"]) == {"status", "per_page"}


# -- get -----------------------------------------------------------------------------------------


def test_a_task_is_shown_with_its_counts_progress_and_failures(client: FlaskClient, tokens: Tokens,
                                                               make_task: Callable[..., int],
                                                               finish: Callable[[int], dict]) -> None:
    task_id = make_task("North", items=[*people(2, "shown"), {"first_name": "", "email": "broken"}])
    finish(task_id)
    body = client.get(f"/api/tasks/{task_id}", headers=bearer(tokens.north)).get_json()
    assert body["status"] == "COMPLETED_WITH_ERRORS"
    assert body["progress"] == 100.0
    assert body["counts"] == {"created": 2, "failed": 1}
    assert [f["line"] for f in body["failures"]] == [3]
    assert body["failures"][0]["code"] == "invalid_row"


def test_another_branchs_task_is_not_found_for_staff(client: FlaskClient, tokens: Tokens,
                                                    make_task: Callable[..., int]) -> None:
    south = make_task("South")
    for path in (f"/api/tasks/{south}", f"/api/tasks/{south}/results", f"/api/tasks/{south}/results.csv"):
        assert_envelope(client.get(path, headers=bearer(tokens.north)), 404, "not_found")
    assert_envelope(client.post(f"/api/tasks/{south}/cancel", headers=bearer(tokens.north)), 404, "not_found")
    assert client.get(f"/api/tasks/{south}", headers=bearer(tokens.south)).status_code == 200


def test_a_missing_task_is_not_found(client: FlaskClient, tokens: Tokens) -> None:
    body = assert_envelope(client.get("/api/tasks/999", headers=bearer(tokens.admin)), 404, "not_found")
    assert "#999" in body["message"]


# -- create from JSON ----------------------------------------------------------------------------


def test_json_items_create_a_task_that_the_workers_complete(client: FlaskClient, tokens: Tokens,
                                                            finish: Callable[[int], dict]) -> None:
    response = client.post("/api/tasks", headers=bearer(tokens.admin), json={
        "title": "New teachers", "user_type": "teacher", "branch": "East", "priority": 2,
        "items": [*people(3, "json"), {"first_name": "No", "email": "no-at-sign"}]})
    assert response.status_code == 201, response.text
    task = response.get_json()
    assert response.headers["Location"].endswith(f"/api/tasks/{task['id']}")
    assert (task["branch"], task["priority"], task["total"], task["failed"]) == ("East", 2, 4, 1)
    assert task["created_by"] == "token:tests admin"
    assert finish(task["id"])["status"] == "COMPLETED_WITH_ERRORS"


def test_a_dry_run_reports_and_stores_nothing(client: FlaskClient, tokens: Tokens,
                                              session_factory: sessionmaker[Session]) -> None:
    response = client.post("/api/tasks", headers=bearer(tokens.north), json={
        "title": "Check", "user_type": "teacher", "dry_run": True,
        "items": [*people(2, "dry"), {"first_name": "X", "email": "dry0@example.org"}]})
    assert response.status_code == 200, response.text
    report = response.get_json()
    assert (report["dry_run"], report["total"], report["valid"], report["invalid"]) == (True, 3, 2, 1)
    assert "duplicate" in report["errors"][0]["errors"][-1]
    assert count(session_factory, BackgroundTask) == 0


def test_an_invalid_body_is_refused_with_field_errors_and_stores_nothing(
        client: FlaskClient, tokens: Tokens, session_factory: sessionmaker[Session]) -> None:
    body = assert_envelope(client.post("/api/tasks", headers=bearer(tokens.admin), json={
        "title": "", "user_type": "wizard", "priority": 11, "items": [], "colour": "red"}), 422, "invalid_input")
    assert set(body["errors"]) == {"title", "user_type", "priority", "items", "colour"}
    assert count(session_factory, BackgroundTask) == 0


def test_a_body_that_is_not_json_is_a_bad_request(client: FlaskClient, tokens: Tokens) -> None:
    response = client.post("/api/tasks", data="{not json", content_type="application/json",
                           headers=bearer(tokens.admin))
    assert_envelope(response, 400, "bad_request")


def test_a_body_nested_too_deeply_is_a_bad_request_not_a_crash(client: FlaskClient, tokens: Tokens) -> None:
    nested = '{"a":' * 5000 + "1" + "}" * 5000
    response = client.post("/api/tasks", data=nested, content_type="application/json", headers=bearer(tokens.admin))
    assert "nested too deeply" in assert_envelope(response, 400, "bad_request")["message"]


def test_a_body_in_the_wrong_format_is_refused_with_what_to_send(client: FlaskClient, tokens: Tokens) -> None:
    form = client.post("/api/tasks", data={"title": "T"}, headers=bearer(tokens.north))
    assert "application/json" in assert_envelope(form, 415, "unsupported_media_type")["message"]
    as_json = client.post("/api/tasks/upload", json={"user_type": "teacher"}, headers=bearer(tokens.north))
    assert "multipart/form-data" in assert_envelope(as_json, 415, "unsupported_media_type")["message"]


def test_characters_no_database_can_store_are_refused_before_the_database_sees_them(
        client: FlaskClient, tokens: Tokens, session_factory: sessionmaker[Session]) -> None:
    body = assert_envelope(client.post("/api/tasks", headers=bearer(tokens.north), json={
        "title": "T", "user_type": "teacher", "items": [{"first_name": "A\x00", "email": "a@example.org"}]}),
        422, "invalid_input")
    assert body["errors"] == {"items.0.first_name": ["Must not contain NUL or unpaired surrogate characters."]}
    assert_envelope(client.get("/api/tasks?status=PENDING%00", headers=bearer(tokens.north)), 422, "invalid_input")
    surrogate = client.post("/api/tasks", headers={**bearer(tokens.north), "Content-Type": "application/json"},
                            data='{"title": "a\\ud800", "user_type": "teacher", "items": [{"email": "x@example.org"}]}')
    assert assert_envelope(surrogate, 422, "invalid_input")["errors"] == {
        "title": ["Must not contain NUL or unpaired surrogate characters."]}
    rows = b"".join(b"Name%d,Last,n%d@example.org\n" % (i, i) for i in range(3000))  # past the binary sniffing
    body = assert_envelope(upload(client, tokens.north, CSV + rows + b"Bad\x00Name,X,bad@example.org\n"),
                           422, "invalid_input")
    assert "NUL" in body["message"] and "CSV UTF-8" in body["message"]
    assert count(session_factory, BackgroundTask) == 0


def test_an_admin_must_name_the_branch(client: FlaskClient, tokens: Tokens) -> None:
    body = assert_envelope(client.post("/api/tasks", headers=bearer(tokens.admin), json={
        "title": "T", "user_type": "teacher", "items": people(1)}), 422, "invalid_input")
    assert "branch" in body["errors"]
    body = assert_envelope(client.post("/api/tasks", headers=bearer(tokens.admin), json={
        "title": "T", "user_type": "teacher", "branch_id": 999, "items": people(1)}), 422, "invalid_input")
    assert "branch_id" in body["errors"]


def test_staff_cannot_import_into_another_branch(client: FlaskClient, tokens: Tokens,
                                                 session_factory: sessionmaker[Session]) -> None:
    for where in ({"branch": "South"}, {"branch_id": tokens.south_id}, {"branch": "Brand New"}):
        response = client.post("/api/tasks", headers=bearer(tokens.north),
                               json={"title": "T", "user_type": "teacher", "items": people(1), **where})
        assert_envelope(response, 403, "forbidden")
    assert count(session_factory, BackgroundTask) == 0
    with session_scope(session_factory) as session:
        assert session.query(Branch).filter_by(name="Brand New").count() == 0
    ok = client.post("/api/tasks", headers=bearer(tokens.north),
                     json={"title": "T", "user_type": "teacher", "items": people(1), "branch": "North"})
    assert ok.status_code == 201 and ok.get_json()["branch"] == "North"


def test_more_items_than_the_row_limit_are_refused_as_too_large(client: FlaskClient, tokens: Tokens,
                                                                 api_app, session_factory) -> None:
    api_app.extensions["scholarise_settings"] = api_app.extensions["scholarise_settings"].replace(max_rows=3)
    body = assert_envelope(client.post("/api/tasks", headers=bearer(tokens.north), json={
        "title": "T", "user_type": "teacher", "items": people(4)}), 413, "too_many_rows")
    assert "3" in body["message"]
    assert count(session_factory, BackgroundTask) == 0


def test_creating_before_the_services_are_initialised_says_so(client: FlaskClient, tokens: Tokens) -> None:
    from actors import runtime

    saved = runtime.current()
    runtime._current = None  # as in a web process that has not run GET /api/init yet
    try:
        response = client.post("/api/tasks", headers=bearer(tokens.north),
                               json={"title": "T", "user_type": "teacher", "items": people(1)})
    finally:
        runtime._current = saved
    assert_envelope(response, 503, "services_not_started")


# -- create from a CSV upload --------------------------------------------------------------------


def test_a_csv_upload_creates_a_task_with_its_invalid_rows_failed(client: FlaskClient, tokens: Tokens) -> None:
    response = upload(client, tokens.north, priority="3")
    assert response.status_code == 201, response.text
    task = response.get_json()
    assert (task["title"], task["source"], task["total"], task["failed"]) == ("Import teachers.csv", "teachers.csv",
                                                                              3, 1)
    assert task["priority"] == 3 and task["branch"] == "North"
    assert task["failures"][0]["line"] == 4


def test_a_csv_dry_run_reports_the_encoding_and_stores_nothing(client: FlaskClient, tokens: Tokens,
                                                               session_factory: sessionmaker[Session]) -> None:
    latin = "first_name,last_name,email\nJosé,Núñez,jose@example.org\n".encode("cp1252")
    report = upload(client, tokens.north, latin, dry_run="true").get_json()
    assert report["encoding_source"] == "detected" and report["valid"] == 1
    assert report["preview"][0]["data"]["first_name"] == "José"
    assert count(session_factory, BackgroundTask) == 0


def test_an_upload_over_the_size_limit_is_refused_as_too_large(client: FlaskClient, tokens: Tokens, api_app,
                                                                session_factory: sessionmaker[Session]) -> None:
    limit = api_app.extensions["scholarise_settings"].max_upload_bytes
    just_over = CSV + b"x" * (limit - len(CSV) + 1)  # under Flask's body limit, over the file limit
    body = assert_envelope(upload(client, tokens.north, just_over), 413, "too_large")
    assert f"{limit:,}" in body["message"]
    way_over = b"x" * (api_app.config["MAX_CONTENT_LENGTH"] + 1)  # refused while the body is read
    assert_envelope(upload(client, tokens.north, way_over), 413, "too_large")
    assert count(session_factory, BackgroundTask) == 0


def test_a_file_with_more_rows_than_allowed_is_refused_as_too_large(client: FlaskClient, tokens: Tokens, api_app,
                                                                     session_factory) -> None:
    api_app.extensions["scholarise_settings"] = api_app.extensions["scholarise_settings"].replace(max_rows=2)
    assert_envelope(upload(client, tokens.north), 413, "too_many_rows")
    assert count(session_factory, TaskItem) == 0


def test_an_unusable_file_is_refused_with_the_reason(client: FlaskClient, tokens: Tokens) -> None:
    body = assert_envelope(upload(client, tokens.north, b"PK\x03\x04binary"), 422, "invalid_input")
    assert "Excel" in body["message"]
    body = assert_envelope(upload(client, tokens.north, b"name,phone\nAda,1\n"), 422, "invalid_input")
    assert "email" in body["message"].lower()


def test_an_upload_without_a_file_names_the_missing_field(client: FlaskClient, tokens: Tokens) -> None:
    response = client.post("/api/tasks/upload", data={"user_type": "teacher"}, content_type="multipart/form-data",
                           headers=bearer(tokens.north))
    assert assert_envelope(response, 422, "invalid_input")["errors"] == {"file": ["Missing data for required field."]}


# -- cancel, retry, delete ------------------------------------------------------------------------


def test_a_pending_task_can_be_cancelled_once(client: FlaskClient, tokens: Tokens,
                                              make_task: Callable[..., int]) -> None:
    task_id = make_task("North")
    response = client.post(f"/api/tasks/{task_id}/cancel", headers=bearer(tokens.north))
    assert response.status_code == 200, response.text
    assert response.get_json()["status"] == "CANCELLED"
    assert response.get_json()["counts"] == {"cancelled": 3}
    assert_envelope(client.post(f"/api/tasks/{task_id}/cancel", headers=bearer(tokens.north)), 409, "invalid_state")


def test_failed_rows_of_a_finished_task_can_be_retried(client: FlaskClient, tokens: Tokens,
                                                       make_task: Callable[..., int],
                                                       finish: Callable[[int], dict]) -> None:
    task_id = make_task("North")
    assert_envelope(client.post(f"/api/tasks/{task_id}/retry", headers=bearer(tokens.north)), 409, "invalid_state")
    client.post(f"/api/tasks/{task_id}/cancel", headers=bearer(tokens.north))
    response = client.post(f"/api/tasks/{task_id}/retry", headers=bearer(tokens.north))
    assert response.status_code == 200, response.text
    assert response.get_json()["queued"] == 3
    assert response.get_json()["task"]["status"] == "PENDING"
    assert finish(task_id)["status"] == "COMPLETED"


def test_deleting_a_running_task_is_refused_and_keeps_it(client: FlaskClient, tokens: Tokens,
                                                         make_task: Callable[..., int]) -> None:
    task_id = make_task("North")
    body = assert_envelope(client.delete(f"/api/tasks/{task_id}", headers=bearer(tokens.admin)), 409, "invalid_state")
    assert "cancel it" in body["message"]
    assert client.get(f"/api/tasks/{task_id}", headers=bearer(tokens.admin)).status_code == 200


def test_an_admin_deletes_a_finished_task_with_its_rows(client: FlaskClient, tokens: Tokens,
                                                        make_task: Callable[..., int],
                                                        session_factory: sessionmaker[Session]) -> None:
    task_id = make_task("North")
    client.post(f"/api/tasks/{task_id}/cancel", headers=bearer(tokens.admin))
    assert_envelope(client.delete(f"/api/tasks/{task_id}", headers=bearer(tokens.north)), 403, "forbidden")
    response = client.delete(f"/api/tasks/{task_id}", headers=bearer(tokens.admin))
    assert response.status_code == 204 and response.data == b""
    assert count(session_factory, TaskItem) == 0
    assert_envelope(client.get(f"/api/tasks/{task_id}", headers=bearer(tokens.admin)), 404, "not_found")


# -- results ------------------------------------------------------------------------------------


def test_results_come_as_json_and_as_a_spreadsheet_safe_csv(client: FlaskClient, tokens: Tokens,
                                                           make_task: Callable[..., int],
                                                           finish: Callable[[int], dict]) -> None:
    task_id = make_task("North", items=[*people(1, "res"), {"first_name": "=cmd()", "email": "=evil"}])
    finish(task_id)
    rows = client.get(f"/api/tasks/{task_id}/results", headers=bearer(tokens.north)).get_json()["rows"]
    assert [(r["line"], r["status"]) for r in rows] == [(1, "created"), (2, "failed")]
    assert rows[0]["external_user_id"]
    response = client.get(f"/api/tasks/{task_id}/results.csv", headers=bearer(tokens.north))
    assert response.mimetype == "text/csv"
    assert f"results-{task_id}.csv" in response.headers["Content-Disposition"]
    table = list(csv.reader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert table[0][:3] == ["line", "status", "email"]
    assert table[2][2] == "'=evil" and table[2][3] == "'=cmd()"


@pytest.mark.parametrize("path", ["/api/tasks/{id}/results", "/api/tasks/{id}/results.csv"])
def test_results_need_a_token(client: FlaskClient, make_task: Callable[..., int], path: str) -> None:
    assert_envelope(client.get(path.format(id=make_task("North"))), 401, "unauthorized")


def test_work_stored_but_not_queued_is_a_503_that_names_the_task(client: FlaskClient) -> None:
    """The broker refused the doorbell after the task was stored: the client must not submit it again."""
    from actors.imports import NotQueuedError
    from admin.api.errors import handle_scholarise_error

    with client.application.test_request_context("/api/tasks", method="POST"):
        response = handle_scholarise_error(NotQueuedError(41, "ConnectionError: Connection refused"))
    body = response.get_json()
    assert response.status_code == 503 and body["code"] == "not_queued"
    assert "Task #41 is stored" in body["message"] and "Do not submit it again" in body["message"]
