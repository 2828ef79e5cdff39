"""The custom pages: bulk import (upload, preview, confirm), background services, email settings, error pages."""

from __future__ import annotations

import io
import re

import dramatiq
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from scholarise.db import session_scope
from scholarise.models import BackgroundTask, EmailConfiguration, TaskItem
from tests.admin.conftest import Accounts, client_as, csrf_token, page_token
from tests.conftest import DEMO


def _upload(client: FlaskClient, user_type: str, content: bytes, name: str = "people.csv", **fields: str):
    page = client.get(f"/admin/import/{user_type}/")
    data = {"csrf_token": csrf_token(page.text), "file": (io.BytesIO(content), name), "priority": "3", **fields}
    return client.post(f"/admin/import/{user_type}/", data=data, content_type="multipart/form-data")


def _uploads(settings) -> list[str]:  # noqa: ANN001
    folder = settings.instance_path / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_the_import_page_offers_the_three_kinds_and_their_templates(admin_client: FlaskClient,
                                                                     accounts: Accounts) -> None:
    page = admin_client.get("/admin/import/").text
    for kind in ("teacher", "employee", "student"):
        assert f"/admin/import/{kind}/" in page and f"/admin/import/{kind}/template.csv" in page
    template = admin_client.get("/admin/import/student/template.csv")
    assert template.mimetype == "text/csv" and 'filename="students-template.csv"' in template.headers[
        "Content-Disposition"]
    assert template.data.decode("utf-8-sig").splitlines()[0].startswith("first_name,last_name,email,")
    assert admin_client.get("/admin/import/wizard/").status_code == 404


def test_a_preview_lists_every_error_by_line_and_creates_nothing(
        admin_client: FlaskClient, accounts: Accounts, migrated, session_factory: sessionmaker[Session]) -> None:
    response = _upload(admin_client, "teacher", (DEMO / "teachers_with_errors.csv").read_bytes(),
                       "teachers_with_errors.csv", branch="North Campus")
    assert response.status_code == 302 and "/admin/import/preview/" in response.headers["Location"]
    page = admin_client.get(response.headers["Location"]).text
    errors = re.findall(r'<tr class="row-error"><td>(\d+)</td><td>(.*?)</td></tr>', page)
    assert [line for line, _ in errors] == ["4", "8", "12", "20"]
    assert "duplicate of line 6 in this file" in errors[2][1]
    assert 'data-figure="valid">36<' in page and 'data-figure="invalid">4<' in page
    assert "Import 36 teachers" in page
    with session_scope(session_factory) as s:
        assert s.scalar(select(BackgroundTask.id)) is None
    assert len(_uploads(migrated)) == 2  # the file and its choices, in the instance folder


def test_confirming_starts_the_task_with_every_row_and_removes_the_upload(
        admin_client: FlaskClient, accounts: Accounts, migrated, broker: dramatiq.Broker,
        session_factory: sessionmaker[Session]) -> None:
    preview = _upload(admin_client, "teacher", (DEMO / "teachers_with_errors.csv").read_bytes(),
                      "teachers_with_errors.csv", branch="East Campus", title="Spring intake").headers["Location"]
    token = page_token(admin_client, preview)
    done = admin_client.post(preview + "/confirm", data={"csrf_token": token})
    assert done.status_code == 302 and "/admin/tasks/details/?id=" in done.headers["Location"]
    assert "Import started as task" in admin_client.get(done.headers["Location"]).text
    with session_scope(session_factory) as s:
        task = s.scalars(select(BackgroundTask)).one()
        assert (task.title, task.branch.name, task.priority, task.total, task.failed_count) == (
            "Spring intake", "East Campus", 3, 40, 4)
        assert task.created_by == "admin@school.example" and task.options["source"] == "teachers_with_errors.csv"
        assert s.query(TaskItem).filter_by(task_id=task.id, status="pending").count() == 36
    assert _uploads(migrated) == []
    assert admin_client.get(preview).status_code == 302  # used up


def test_staff_import_into_their_own_branch_whatever_they_send(
        app: Flask, accounts: Accounts, broker: dramatiq.Broker, session_factory: sessionmaker[Session]) -> None:
    staff = client_as(app, accounts.staff_b_id)
    preview = _upload(staff, "employee", (DEMO / "employees.csv").read_bytes(), branch="North Campus")
    page = staff.get(preview.headers["Location"]).text
    assert "South Campus" in page
    staff.post(preview.headers["Location"] + "/confirm", data={"csrf_token": csrf_token(page)})
    with session_scope(session_factory) as s:
        assert s.scalars(select(BackgroundTask)).one().branch_id == accounts.branch_b


def test_an_upload_is_only_visible_to_the_person_who_made_it(app: Flask, accounts: Accounts) -> None:
    owner = client_as(app, accounts.staff_a_id)
    preview = _upload(owner, "teacher", (DEMO / "teachers.csv").read_bytes()).headers["Location"]
    for other in (client_as(app, accounts.staff_b_id), client_as(app, accounts.admin_id)):
        response = other.get(preview)
        assert response.status_code == 302 and response.headers["Location"].endswith("/admin/import/")
        assert "has expired or was already used" in other.get("/admin/import/").text
        assert other.post(preview + "/confirm", data={"csrf_token": page_token(other)}).status_code == 302
    assert owner.get(preview).status_code == 200


@pytest.mark.parametrize(("content", "message"), [
    (b"", "Choose the CSV file"),
    (b"PK\x03\x04\x14\x00binary", "looks like an Excel workbook"),
    (b"first_name,email\n", "has a header but no data rows"),
    (b"name;phone\nAda;1\n", "email"),
])
def test_a_file_that_cannot_be_used_is_refused_with_a_reason(admin_client: FlaskClient, accounts: Accounts,
                                                             migrated, content: bytes, message: str) -> None:
    response = _upload(admin_client, "teacher", content, branch="North Campus")
    assert response.status_code == 400  # shown in the form, which keeps what was chosen
    assert message in response.text and 'value="North Campus"' in response.text
    assert _uploads(migrated) == []


def test_a_branch_is_required_from_admins(admin_client: FlaskClient, accounts: Accounts, migrated) -> None:
    response = _upload(admin_client, "teacher", (DEMO / "teachers.csv").read_bytes())
    assert response.status_code == 400 and "Choose the branch" in response.text
    assert _uploads(migrated) == []


def test_an_upload_over_the_limit_is_refused(app: Flask, accounts: Accounts, migrated) -> None:
    app.extensions["scholarise_settings"] = migrated.replace(max_upload_bytes=2048)
    response = _upload(client_as(app, accounts.admin_id), "teacher", b"first_name,email\n" + b"A,a@b.org\n" * 400,
                       branch="North Campus")
    assert response.status_code == 400 and "larger than" in response.text
    assert _uploads(migrated) == []


def test_an_upload_far_over_the_limit_returns_to_the_form_with_the_limit(app: Flask, accounts: Accounts,
                                                                           migrated) -> None:
    """Past MAX_CONTENT_LENGTH the body is never read: the person is sent back to the form, told the limit."""
    app.config["MAX_CONTENT_LENGTH"] = 4096
    client = client_as(app, accounts.admin_id)
    response = _upload(client, "teacher", b"first_name,email\n" + b"A,a@b.org\n" * 2000, branch="North Campus")
    assert response.status_code == 303 and response.headers["Location"].endswith("/admin/import/teacher/")
    form = client.get("/admin/import/teacher/")
    assert "The file is larger than the 10 MB limit" in form.text and 'id="upload-form"' in form.text
    assert _uploads(migrated) == []


def test_html_in_an_uploaded_file_is_shown_as_text_in_the_preview(admin_client: FlaskClient,
                                                                  accounts: Accounts) -> None:
    content = b"first_name,last_name,email\n<script>alert(1)</script>,<b>x</b>,a@example.org\n"
    preview = _upload(admin_client, "teacher", content, branch="<i>B</i>").headers["Location"]
    page = admin_client.get(preview).text
    assert "<script>alert(1)</script>" not in page and "<b>x</b>" not in page and "<i>B</i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_discarding_an_upload_removes_it(admin_client: FlaskClient, accounts: Accounts, migrated) -> None:
    preview = _upload(admin_client, "teacher", (DEMO / "teachers.csv").read_bytes(),
                      branch="North Campus").headers["Location"]
    response = admin_client.post(preview + "/discard", data={"csrf_token": page_token(admin_client, preview)})
    assert response.status_code == 302 and _uploads(migrated) == []


def test_the_services_dashboard_shows_status_activity_and_restarts(
        admin_client: FlaskClient, accounts: Accounts, broker: dramatiq.Broker) -> None:
    page = admin_client.get("/settings/background-services/")
    assert page.status_code == 200
    for heading in ("Database", "Broker", "Workers", "Scheduler", "Mail outbox", "Rows processed",
                    "Worker processes", "Last health checks"):
        assert heading in page.text
    assert admin_client.get("/settings/background-services/?window=24h").status_code == 200
    status = admin_client.get("/settings/background-services/status.json").json
    assert status["database"]["status"] == "ok"
    restarted = admin_client.post("/settings/background-services/restart",
                                  data={"csrf_token": csrf_token(page.text)}, follow_redirects=True)
    assert "Restart done." in restarted.text and "Recovery released 0 rows" in restarted.text
    assert 'id="last-restart"' in restarted.text


def test_the_throughput_chart_draws_processed_rows(admin_client: FlaskClient, accounts: Accounts,
                                                   session_factory: sessionmaker[Session],
                                                   broker: dramatiq.Broker) -> None:
    from scholarise.models import utcnow
    from tests.admin.conftest import make_task

    task_id = make_task(session_factory, accounts.branch_a, rows=[
        {"first_name": "A", "email": f"a{i}@example.org"} for i in range(5)])
    with session_scope(session_factory) as s:
        for item in s.query(TaskItem).filter_by(task_id=task_id):
            item.status, item.finished_at = "created", utcnow()
    page = admin_client.get("/settings/background-services/").text
    assert '<svg class="throughput-chart"' in page and "5 rows (0 failed)" in page


def test_email_settings_are_saved_and_the_password_is_never_shown(
        admin_client: FlaskClient, accounts: Accounts, session_factory: sessionmaker[Session]) -> None:
    page = admin_client.get("/settings/email-config/")
    assert page.status_code == 200 and "All branches (global)" in page.text
    form = {"csrf_token": csrf_token(page.text), "host": "smtp.school.example", "port": "587",
            "security": "starttls", "username": "mailer", "password": "Sup3r-secret-pw", "from_address":
            "noreply@school.example", "from_name": "Scholarise", "recipients": "head@school.example\nit@school.example",
            "enabled": "y", "notify_on_success": "y", "notify_on_failure": "y"}
    saved = admin_client.post("/settings/email-config/?branch=global", data=form, follow_redirects=True)
    assert "Email settings for all branches (global) saved." in saved.text
    assert "Sup3r-secret-pw" not in saved.text and "A password is stored" in saved.text
    with session_scope(session_factory) as s:
        row = s.scalars(select(EmailConfiguration)).one()
        assert row.recipients == ["head@school.example", "it@school.example"] and not row.include_error_log
        assert row.password_encrypted and "Sup3r-secret-pw" not in row.password_encrypted
    kept = admin_client.post("/settings/email-config/?branch=global", data={**form, "password": "",
                                                                             "include_error_log": "y"})
    assert kept.status_code == 302
    with session_scope(session_factory) as s:
        assert s.scalars(select(EmailConfiguration)).one().has_password


def test_email_settings_that_cannot_work_are_refused_field_by_field(admin_client: FlaskClient,
                                                                    accounts: Accounts) -> None:
    page = admin_client.get(f"/settings/email-config/?branch={accounts.branch_a}")
    assert "uses the global settings" in page.text
    form = {"csrf_token": csrf_token(page.text), "host": "smtp.school.example", "port": "587", "security": "ssl",
            "recipients": "head@school.example", "enabled": "y"}
    response = admin_client.post(f"/settings/email-config/?branch={accounts.branch_a}", data=form)
    assert response.status_code == 400
    assert "The settings were not saved" in response.text
    assert "Port 587 with ssl cannot work" in response.text
    assert "From address is required" in response.text
    bad_recipient = admin_client.post(f"/settings/email-config/?branch={accounts.branch_a}",
                                      data={**form, "recipients": "ok@school.example, not-an-address"})
    assert bad_recipient.status_code == 400
    assert "&#39;not-an-address&#39; is not an email address." in bad_recipient.text
    assert admin_client.get("/settings/email-config/?branch=999").status_code == 404


def test_test_connection_says_precisely_what_is_wrong(admin_client: FlaskClient, accounts: Accounts) -> None:
    token = page_token(admin_client, "/settings/email-config/")
    answer = admin_client.post("/settings/email-config/test-connection?branch=global", data={"csrf_token": token},
                               follow_redirects=True)
    assert "Test connection failed: No SMTP server is configured" in answer.text
    sent = admin_client.post("/settings/email-config/send-test?branch=global",
                             data={"csrf_token": token, "to": "not an address"}, follow_redirects=True)
    assert "Test email not sent" in sent.text


def test_error_pages_are_written_for_people(app: Flask, admin_client: FlaskClient, staff_a_client: FlaskClient,
                                            accounts: Accounts) -> None:
    missing = admin_client.get("/admin/no-such-page")
    assert missing.status_code == 404 and "We could not find that page" in missing.text
    forbidden = staff_a_client.get("/settings/email-config/")
    assert forbidden.status_code == 403 and "You do not have access to this page" in forbidden.text
    assert staff_a_client.get("/admin/feed/", headers={"Accept": "application/json"}).status_code == 200
    assert app.test_client().get("/admin/feed/", headers={"Accept": "application/json"}).json["error"]


def test_every_response_carries_the_security_headers(app: Flask, accounts: Accounts) -> None:
    response = app.test_client().get("/login")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_the_dashboard_warns_when_work_waits_and_no_worker_process_is_alive(
        admin_client: FlaskClient, accounts: Accounts, session_factory: sessionmaker[Session]) -> None:
    from scholarise import heartbeats
    from scholarise.models import utcnow
    from tests.admin.conftest import make_task

    make_task(session_factory, accounts.branch_a, title="Waiting import", status="PENDING")
    with session_scope(session_factory) as s:  # a web process beats, but it takes no work
        heartbeats.beat(s, heartbeats.Identity("web-host", 11, utcnow()), roles=["web"])
    page = admin_client.get("/settings/background-services/").text
    assert "0 worker processes alive" in page
    assert "No worker process is alive to do them: start one." in page
    with session_scope(session_factory) as s:
        heartbeats.beat(s, heartbeats.Identity("work-host", 12, utcnow()), roles=["worker"])
    page = admin_client.get("/settings/background-services/").text
    assert "1 worker process alive" in page and "No worker process is alive" not in page
