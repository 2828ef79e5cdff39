"""The task list and detail pages, their actions, downloads and the polled JSON, for admins and staff."""

from __future__ import annotations

import csv
import io

import dramatiq
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from scholarise.db import session_scope
from scholarise.models import BackgroundTask, TaskItem
from tests.admin.conftest import Accounts, client_as, make_task, page_token

XSS = "<img src=x onerror=alert(1)>"


def test_the_task_list_shows_progress_status_and_counts(admin_client: FlaskClient, accounts: Accounts,
                                                        session_factory: sessionmaker[Session]) -> None:
    make_task(session_factory, accounts.branch_a, title="Spring teachers")
    make_task(session_factory, accounts.branch_b, title="Autumn teachers", status="COMPLETED_WITH_ERRORS")
    page = admin_client.get("/admin/tasks/").text
    assert "Spring teachers" in page and "Autumn teachers" in page
    assert 'class="progress task-progress"' in page and "Completed with errors" in page and "Waiting" in page


def test_the_task_list_filters_searches_and_sorts(admin_client: FlaskClient, accounts: Accounts,
                                                  session_factory: sessionmaker[Session]) -> None:
    make_task(session_factory, accounts.branch_a, title="Spring teachers")
    make_task(session_factory, accounts.branch_b, title="Autumn teachers", status="FAILED")
    listing = admin_client.get("/admin/tasks/")
    assert "Add Filter" in listing.text
    by_search = admin_client.get("/admin/tasks/?search=Autumn").text
    assert "Autumn teachers" in by_search and "Spring teachers" not in by_search
    assert set(_filter_groups(listing.text)) == {"Status", "People", "Type", "Branch", "Created", "Finished"}
    by_branch = admin_client.get("/admin/tasks/?" + _filter_arg(listing.text, "Branch", "contains") + "=South").text
    assert "Autumn teachers" in by_branch and "Spring teachers" not in by_branch
    by_status = admin_client.get("/admin/tasks/?" + _filter_arg(listing.text, "Status", "equals") + "=FAILED").text
    assert "Autumn teachers" in by_status and "Spring teachers" not in by_status
    sorted_page = admin_client.get("/admin/tasks/?sort=1").text  # by title
    assert sorted_page.index("Autumn teachers") < sorted_page.index("Spring teachers")


def _filter_groups(html: str) -> dict:
    import json
    import re

    match = re.search(r'<div id="filter-groups-data" class="d-none">(.*?)</div>', html, re.S)
    assert match
    return json.loads(match.group(1))


def _filter_arg(html: str, group: str, operation: str) -> str:
    for entry in _filter_groups(html)[group]:
        if entry["operation"] == operation:
            return f"flt0_{entry['arg']}"
    raise AssertionError(f"no {group} filter with {operation}")


def test_staff_see_only_their_branch_in_every_list(app: Flask, accounts: Accounts,
                                                   session_factory: sessionmaker[Session]) -> None:
    make_task(session_factory, accounts.branch_a, title="North import",
              rows=[{"first_name": "Nora", "email": "nora.north@example.org"}])
    make_task(session_factory, accounts.branch_b, title="South import",
              rows=[{"first_name": "Sid", "email": "sid.south@example.org"}])
    staff_b = client_as(app, accounts.staff_b_id)
    for url in ("/admin/", "/admin/tasks/", "/admin/task_items/", "/admin/task_logs/", "/admin/feed/",
                "/admin/tasks/?search=North", "/admin/task_items/?search=nora"):
        page = staff_b.get(url)
        assert page.status_code == 200, url
        assert "North import" not in page.text and "nora.north" not in page.text, url
    assert "South import" in staff_b.get("/admin/tasks/").text
    assert "sid.south@example.org" in staff_b.get("/admin/task_items/").text


def test_the_detail_page_shows_counts_timing_rows_with_errors_and_the_log(
        admin_client: FlaskClient, accounts: Accounts, session_factory: sessionmaker[Session]) -> None:
    task_id = make_task(session_factory, accounts.branch_a, title="Detail import")
    page = admin_client.get(f"/admin/tasks/details/?id={task_id}").text
    assert "Detail import" in page and "North Campus" in page
    assert "first name is required" in page and "not-an-email" in page
    assert "Task created with 2 rows (1 invalid) by tests." in page
    assert "Cancel task" in page and "Retry failed rows" not in page and "Delete task" not in page
    failed_only = admin_client.get(f"/admin/tasks/details/?id={task_id}&rows=failed").text
    assert "not-an-email" in failed_only and "ada" not in failed_only.split('id="rows"')[1].split('id="log"')[0]


def test_a_finished_task_offers_retry_and_delete_to_admins_only(app: Flask, accounts: Accounts,
                                                                session_factory: sessionmaker[Session]) -> None:
    task_id = make_task(session_factory, accounts.branch_a, status="COMPLETED_WITH_ERRORS")
    admin_page = client_as(app, accounts.admin_id).get(f"/admin/tasks/details/?id={task_id}").text
    staff_page = client_as(app, accounts.staff_a_id).get(f"/admin/tasks/details/?id={task_id}").text
    assert "Retry failed rows" in admin_page and "Delete task" in admin_page and "Cancel task" not in admin_page
    assert "Retry failed rows" in staff_page and "Delete task" not in staff_page


def test_cancel_retry_and_delete_call_the_services(app: Flask, accounts: Accounts, broker: dramatiq.Broker,
                                                   session_factory: sessionmaker[Session]) -> None:
    client = client_as(app, accounts.staff_a_id)
    token = page_token(client)
    running = make_task(session_factory, accounts.branch_a)
    response = client.post(f"/admin/tasks/{running}/cancel", data={"csrf_token": token})
    assert response.status_code == 302
    assert "was cancelled" in client.get(response.headers["Location"]).text
    again = client.post(f"/admin/tasks/{running}/cancel", data={"csrf_token": token},
                        headers={"Accept": "application/json"})
    assert again.status_code == 409 and "can no longer be cancelled" in again.json["message"]

    finished = make_task(session_factory, accounts.branch_a, status="COMPLETED_WITH_ERRORS")
    retried = client.post(f"/admin/tasks/{finished}/retry", data={"csrf_token": token},
                          headers={"Accept": "application/json"})
    assert retried.status_code == 200 and retried.json["ok"] and retried.json["task"]["status"] == "PENDING"
    assert "1 rows of task" in retried.json["message"]

    staff_delete = client.post(f"/admin/tasks/{running}/delete", data={"csrf_token": token})
    assert staff_delete.status_code == 403
    admin = client_as(app, accounts.admin_id)
    admin_token = page_token(admin)
    busy = admin.post(f"/admin/tasks/{finished}/delete", data={"csrf_token": admin_token},
                      headers={"Accept": "application/json"})
    assert busy.status_code == 409 and "cancel it before deleting" in busy.json["message"]
    gone = admin.post(f"/admin/tasks/{running}/delete", data={"csrf_token": admin_token})
    assert gone.status_code == 302 and gone.headers["Location"].endswith("/admin/tasks/")
    with session_scope(session_factory) as s:
        assert s.get(BackgroundTask, running) is None
        assert s.query(TaskItem).filter_by(task_id=running).count() == 0


def test_bulk_actions_apply_the_same_rules(app: Flask, accounts: Accounts, broker: dramatiq.Broker,
                                           session_factory: sessionmaker[Session]) -> None:
    mine = make_task(session_factory, accounts.branch_a)
    theirs = make_task(session_factory, accounts.branch_b)
    staff_a = client_as(app, accounts.staff_a_id)
    token = page_token(staff_a)
    response = staff_a.post("/admin/tasks/action/", data={"csrf_token": token, "action": "cancel",
                                                          "rowid": [str(mine), str(theirs)]})
    assert response.status_code == 302
    page = staff_a.get("/admin/tasks/").text
    assert "1 task cancelled" in page and f"#{theirs}: not found" in page
    refused = staff_a.post("/admin/tasks/action/", data={"csrf_token": token, "action": "delete", "rowid": str(mine)})
    assert refused.status_code == 302
    with session_scope(session_factory) as s:
        assert s.get(BackgroundTask, mine).status == "CANCELLED"
        assert s.get(BackgroundTask, theirs).status == "PENDING"
        assert s.get(BackgroundTask, mine) is not None  # staff cannot delete
    admin = client_as(app, accounts.admin_id)
    admin.post("/admin/tasks/action/", data={"csrf_token": page_token(admin), "action": "delete",
                                             "rowid": [str(mine), str(theirs)]})
    page = admin.get("/admin/tasks/").text
    assert "1 task deleted" in page and "only finished tasks can be deleted" in page


def test_the_results_csv_has_every_row_and_is_safe_for_spreadsheets(
        admin_client: FlaskClient, accounts: Accounts, session_factory: sessionmaker[Session]) -> None:
    task_id = make_task(session_factory, accounts.branch_a, rows=[
        {"first_name": "=HYPERLINK(\"http://x\")", "last_name": "<b>bold</b>", "email": "f1@example.org"},
        {"first_name": "Bob", "email": "bad"}])
    response = admin_client.get(f"/admin/tasks/{task_id}/results.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert f"task-{task_id}-results.csv" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.data.decode("utf-8-sig"))))
    assert [r["line"] for r in rows] == ["1", "2"]
    assert rows[0]["first_name"].startswith("'=") and rows[0]["last_name"] == "<b>bold</b>"
    assert rows[1]["status"] == "failed" and "not a valid email" in rows[1]["error_message"]


def test_the_polled_feed_lists_active_and_recent_tasks_with_links(app: Flask, accounts: Accounts,
                                                                  session_factory: sessionmaker[Session]) -> None:
    active = make_task(session_factory, accounts.branch_a, title="Active one")
    done = make_task(session_factory, accounts.branch_a, title="Done one", status="COMPLETED")
    admin_feed = client_as(app, accounts.admin_id).get("/admin/feed/", headers={"Accept": "application/json"}).json
    assert [t["id"] for t in admin_feed["active"]] == [active]
    assert [t["id"] for t in admin_feed["recent"]] == [done]
    recent = admin_feed["recent"][0]
    assert recent["results_url"] == f"/admin/tasks/{done}/results.csv" and recent["delete_url"]
    assert admin_feed["active"][0]["delete_url"] is None  # not finished
    staff_feed = client_as(app, accounts.staff_a_id).get("/admin/feed/").json
    assert staff_feed["recent"][0]["delete_url"] is None  # staff never delete
    status = client_as(app, accounts.staff_a_id).get(f"/admin/tasks/{active}/status.json").json
    assert status["status"] == "PENDING" and status["total"] == 2 and status["failed"] == 1


def test_html_in_titles_and_cells_is_shown_as_text_everywhere(app: Flask, accounts: Accounts,
                                                              session_factory: sessionmaker[Session]) -> None:
    task_id = make_task(session_factory, accounts.branch_a, title=XSS, rows=[
        {"first_name": "<script>alert(2)</script>", "last_name": XSS, "email": "x1@example.org"},
        {"first_name": "Eve", "email": "<b>bad</b>"}])
    done = make_task(session_factory, accounts.branch_a, title=XSS + " done", status="COMPLETED")
    client = client_as(app, accounts.admin_id)
    for url in ("/admin/", "/admin/tasks/", f"/admin/tasks/details/?id={task_id}", f"/admin/tasks/details/?id={done}",
                "/admin/task_items/", "/admin/task_logs/", "/settings/background-services/"):
        page = client.get(url).text
        assert XSS not in page and "<script>alert(2)" not in page and "<b>bad</b>" not in page, url
    assert "&lt;img src=x onerror=alert(1)&gt;" in client.get(f"/admin/tasks/details/?id={task_id}").text
    assert client.get("/admin/feed/").json["active"][0]["title"] == XSS  # JSON carries it; the page script uses text


def test_empty_lists_say_what_to_do(admin_client: FlaskClient, accounts: Accounts) -> None:
    home = admin_client.get("/admin/").text
    assert "Nothing is running. Start an import" in home and "No import has finished yet." in home
    assert "Import teachers" in admin_client.get("/admin/tasks/").text


def test_a_missing_task_gets_a_friendly_404(admin_client: FlaskClient, accounts: Accounts) -> None:
    response = admin_client.get("/admin/tasks/details/?id=999")
    assert response.status_code == 404 and "belongs to another branch" in response.text
    assert admin_client.get("/admin/tasks/999/status.json").json["status"] == 404


def test_people_lists_name_the_branch(admin_client: FlaskClient, accounts: Accounts,
                                      session_factory: sessionmaker[Session]) -> None:
    import re

    from scholarise.models import Branch, Teacher

    with session_scope(session_factory) as s:
        branch = s.get(Branch, accounts.branch_a)
        s.add(Teacher(branch_id=branch.id, first_name="Grace", last_name="Hopper", email="grace@example.org"))
        name = branch.name
    page = admin_client.get("/admin/teachers/").text
    cells = [c.strip() for c in re.findall(r'<td class="col-branch_id">(.*?)</td>', page, re.S)]
    assert cells == [name]
