"""The admin site in a real browser (Debian's Chromium driven by Playwright) against a real threaded server.

The server runs in a thread on 127.0.0.1 with the actors on a stub broker and a Dramatiq worker
processing imports for real. Screenshots of every page go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from sqlalchemy.orm import Session, sessionmaker

from scholarise.config import PROJECT_ROOT, Settings
from scholarise.db import make_engine, make_session_factory, upgrade
from tests.admin.conftest import ADMIN, PASSWORD, STAFF_B, Accounts, LiveServer, create_accounts, make_task
from tests.conftest import DEMO
from tests.support import services
from tests.support.smtp import Certificate, SmtpServer, make_certificate

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = PROJECT_ROOT / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
XSS = "<img src=x onerror=alert(1)>"


@dataclass
class Stack:
    """One server, worker, database and Chromium shared by the module's tests (built once: ~5 s saved per test)."""

    settings: Settings
    certificate: Certificate
    worker: dramatiq.Worker
    factory: sessionmaker[Session]
    accounts: Accounts
    url: str
    browser: Any


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Build the app before Playwright starts: its event loop would otherwise upset Flask's async teardown."""
    chromium = services.require("chromium", services.chromium_path())
    from playwright.sync_api import sync_playwright

    import actors
    from actors import runtime
    from admin import create_app

    tmp = tmp_path_factory.mktemp("browser")
    certificate = make_certificate(tmp / "tls")
    settings = Settings(instance_path=tmp / "instance", broker="stub", batch_size=5, progress_interval=0.0,
                        worker_threads=2, secret_key="test-secret-key-0123456789",
                        mail_ca_file=certificate.cert_path, mail_timeout=5.0)
    upgrade(settings)
    broker = actors.configure(settings)
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=50)
    worker.start()
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    accounts = create_accounts(factory)
    app = create_app(settings)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with LiveServer(app) as live, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                yield Stack(settings, certificate, worker, factory, accounts, live.url, browser)
            finally:
                browser.close()
    finally:
        worker.stop()
        broker.close()
        runtime.set_runtime(None)
        engine.dispose()


@pytest.fixture
def page(stack: Stack) -> Iterator[Any]:
    context = stack.browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.alerts = []

    def on_dialog(dialog: Any) -> None:
        if dialog.type == "alert":
            tab.alerts.append(dialog.message)
        dialog.accept()

    tab.on("dialog", on_dialog)
    tab.base = stack.url
    try:
        yield tab
    finally:
        context.close()


def shot(page: Any, name: str, *, full: bool = True) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full)


def sign_in(page: Any, email: str = ADMIN) -> None:
    page.goto(page.base + "/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/admin/")


def test_an_admin_imports_a_file_and_watches_it_finish_without_reloading(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    page.goto(page.base + "/admin/")
    expect(page).to_have_url(page.base + "/login?next=/admin/")
    shot(page, "01-sign-in")
    page.fill("#email", ADMIN)
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    expect(page.locator("#signin-error")).to_contain_text("The email or password is not right")
    sign_in(page)
    expect(page.locator("h1")).to_contain_text("Hello, Ada Admin")
    shot(page, "02-home")

    page.click("text=Import teachers")
    expect(page.locator("h1")).to_have_text("Import teachers")
    # Over the 10 MB limit: refused before it is sent, and the choices stay.
    huge = stack.settings.instance_path.parent / "huge.csv"
    huge.write_bytes(b"first_name,email\n" + b"A,a@example.org\n" * 700_000)
    page.set_input_files("#file", str(huge))
    page.fill("#branch", "North Campus")
    page.click("text=Upload and check")
    expect(page.locator("#upload-error")).to_contain_text("larger than the 10 MB limit")
    expect(page.locator("#branch")).to_have_value("North Campus")
    page.set_input_files("#file", str(DEMO / "teachers_with_errors.csv"))
    page.fill("#branch", "North Campus")
    shot(page, "03-import-upload")
    page.click("text=Upload and check")
    errors = page.locator("tr.row-error")
    expect(errors).to_have_count(4)
    assert [errors.nth(i).locator("td").first.inner_text() for i in range(4)] == ["4", "8", "12", "20"]
    expect(page.locator("[data-figure=valid]")).to_have_text("36")
    shot(page, "04-import-preview")

    stack.worker.pause()  # hold the work so the page can be seen before, during and after
    page.click("#confirm-import")
    expect(page.locator(".alert-success")).to_contain_text("Import started as task")
    task_id = int(page.url.rsplit("=", 1)[1])
    page.evaluate("window.__sameDocument = 'yes'")
    page.click("#task-menu-toggle")
    item = page.locator(f".task-menu-item[data-task-id='{task_id}']")
    expect(item).to_be_visible()
    expect(item.locator(".progress-bar")).not_to_have_text("100 %")
    shot(page, "05-dropdown-waiting", full=False)

    stack.worker.resume()
    expect(item.locator(".progress-bar")).to_have_text("100 %", timeout=30_000)
    expect(item).to_have_attribute("data-status", "COMPLETED_WITH_ERRORS")
    expect(item.locator(".task-menu-meta")).to_contain_text("40 of 40 rows · 36 created · 0 existed · 4 failed")
    assert page.evaluate("window.__sameDocument") == "yes"  # no reload happened
    assert int(page.get_attribute("body", "data-feed-updates")) >= 2
    expect(page.locator("[data-field=created]")).to_have_text("36")  # the detail page followed along too
    expect(page.locator("[data-finished-notice]")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel task")).to_have_count(0)
    shot(page, "06-dropdown-finished", full=False)

    with page.expect_download() as download_info:
        item.locator(".task-menu-download").click()
    download = download_info.value
    assert download.suggested_filename == f"task-{task_id}-results.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text(encoding="utf-8-sig"))))
    assert len(rows) == 40
    assert sum(r["status"] == "created" for r in rows) == 36
    assert [int(r["line"]) for r in rows if r["status"] == "failed"] == [4, 8, 12, 20]
    assert all(r["external_user_id"] for r in rows if r["status"] == "created")

    page.reload()
    expect(page.locator(".rows-table tbody tr")).to_have_count(40)
    shot(page, "07-task-detail")
    page.goto(page.base + "/admin/tasks/")
    shot(page, "08-task-list")
    assert page.alerts == []


def test_an_admin_restarts_the_services_from_the_dashboard(page: Any) -> None:
    from playwright.sync_api import expect

    sign_in(page)
    page.goto(page.base + "/settings/background-services/")
    expect(page.locator("h1")).to_have_text("Background services")
    expect(page.locator("[data-service=database]")).to_contain_text("ok")
    shot(page, "09-services-dashboard")
    page.click("#restart-services")  # a confirmation dialog, accepted
    expect(page.locator(".alert-success")).to_contain_text("Restart done.")
    expect(page.locator("#last-restart")).to_contain_text("Recovery released")
    shot(page, "10-services-restarted")


def test_an_admin_configures_email_and_tests_the_connection(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    with SmtpServer(mode="starttls", certificate=stack.certificate, username="mailer", password="s3cret-Pass") as smtp:
        sign_in(page)
        page.goto(page.base + "/settings/email-config/")
        shot(page, "11-email-empty")
        page.click("#test-connection")
        expect(page.locator(".alert-danger")).to_contain_text("No SMTP server is configured")
        page.fill("#host", "127.0.0.1")
        page.fill("#port", str(smtp.port))
        page.select_option("#security", "starttls")
        page.fill("#username", "mailer")
        page.fill("#password", "s3cret-Pass")
        page.fill("#from_address", "noreply@school.example")
        page.fill("#from_name", "Scholarise")
        page.fill("#recipients", "head@school.example")
        page.click("#save-email")
        expect(page.locator(".alert-success")).to_contain_text("saved")
        assert "s3cret-Pass" not in page.content()
        expect(page.locator("#password")).to_have_value("")
        page.click("#test-connection")
        expect(page.locator(".alert-success")).to_contain_text(
            f"Test connection: Connected to 127.0.0.1:{smtp.port} (STARTTLS, user mailer) and logged in.")
        shot(page, "12-email-connected")
        page.click("#send-test-email")
        expect(page.locator(".alert-success")).to_contain_text("Test email sent to head@school.example")
        received = smtp.wait_for(1)[0]
        assert received.rcpt_tos == ["head@school.example"] and received.mail_from == "noreply@school.example"
        page.fill("#port", "465")
        page.select_option("#security", "starttls")
        page.click("#save-email")
        expect(page.locator(".invalid-feedback")).to_contain_text("cannot work")
        shot(page, "13-email-invalid")
    page.goto(page.base + "/settings/email-config/")
    page.click("#test-connection")
    expect(page.locator(".alert-danger")).to_contain_text("Test connection failed")


def test_html_from_titles_and_files_shows_as_text_and_never_runs(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    task_id = make_task(stack.factory, stack.accounts.branch_a, title=XSS, rows=[
        {"first_name": "<script>alert(2)</script>", "last_name": XSS, "email": "x1@example.org"},
        {"first_name": "<b>Eve</b>", "email": "<i>bad</i>"}])
    done = make_task(stack.factory, stack.accounts.branch_a, title=XSS + " done", status="COMPLETED")
    sign_in(page)
    expect(page.get_by_text(XSS, exact=False).filter(visible=True).first).to_be_visible()
    page.click("#task-menu-toggle")
    expect(page.locator(".task-menu").get_by_text(f"#{task_id} {XSS}")).to_be_visible()
    shot(page, "14-xss-home", full=False)
    finished = page.locator(f".task-menu-item[data-task-id='{done}']")
    finished.locator(".task-menu-delete").click()  # confirmed; sent with the page's CSRF token in a header
    expect(finished).to_have_count(0)
    for path, text in (("/admin/tasks/", XSS), ("/admin/task_items/", "<i>bad</i>"),
                       ("/settings/background-services/", XSS), (f"/admin/tasks/details/?id={task_id}", XSS),
                       (f"/admin/tasks/details/?id={task_id}", "<script>alert(2)</script>")):
        page.goto(page.base + path)
        expect(page.get_by_text(text, exact=False).filter(visible=True).first).to_be_visible()
        assert page.locator("img[src=x]").count() == 0 and page.locator("b:text('Eve'), i:text('bad')").count() == 0
    shot(page, "15-xss-rows")
    page.goto(page.base + "/admin/import/teacher/")
    page.set_input_files("#file", files=[{"name": "x.csv", "mimeType": "text/csv",
                                          "buffer": f"first_name,email\n{XSS},a@example.org\n".encode()}])
    page.fill("#branch", "<b>Branch</b>")
    page.click("text=Upload and check")
    expect(page.locator(".preview-table").get_by_text(XSS)).to_be_visible()
    page.wait_for_timeout(300)
    assert page.alerts == []


def test_staff_see_their_branch_and_pages_fit_a_tablet(page: Any, stack: Stack) -> None:
    from playwright.sync_api import expect

    make_task(stack.factory, stack.accounts.branch_a, title="North import")
    make_task(stack.factory, stack.accounts.branch_b, title="South import", status="COMPLETED")
    page.set_viewport_size({"width": 768, "height": 1024})
    sign_in(page, STAFF_B)
    expect(page.get_by_text("South import").filter(visible=True).first).to_be_visible()
    assert page.get_by_text("North import").count() == 0
    shot(page, "16-staff-home-tablet")
    page.click(".navbar-toggler")  # collapsed menu: the activity dropdown must open inside the screen
    page.click("#task-menu-toggle")
    expect(page.locator(".task-menu .task-menu-item").first).to_be_visible()
    box = page.locator(".task-menu").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 768, box
    shot(page, "16b-activity-menu-tablet")
    page.keyboard.press("Escape")
    page.goto(page.base + "/admin/import/student/")
    expect(page.locator("input[disabled]")).to_have_value("South Campus")
    shot(page, "17-staff-import-tablet")
    response = page.goto(page.base + "/settings/email-config/")
    assert response.status == 403
    expect(page.locator("h1")).to_have_text("You do not have access to this page")
    shot(page, "18-error-403")
    page.goto(page.base + "/admin/tasks/details/?id=1")
    expect(page.locator("h1")).to_have_text("We could not find that page")
    page.set_viewport_size({"width": 1280, "height": 860})
    page.goto(page.base + "/admin/tasks/")
    shot(page, "19-staff-task-list")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280
