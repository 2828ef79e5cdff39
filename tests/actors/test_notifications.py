"""Email notifications end to end: a real import through the stub broker, delivered to a real SMTP server.

The SMTP server is aiosmtpd on loopback (tests/support/smtp.py) with STARTTLS or implicit SSL (a
self-signed certificate made here) and AUTH; the app trusts the certificate through
``mail_ca_file`` and verifies it like any other.
"""

from __future__ import annotations

import base64
import email
import email.policy
import logging
import threading
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

import actors
from actors import runtime
from actors.notifications import recover_outbox, resend, send_email
from scholarise import smtp_check
from scholarise.config import Settings
from scholarise.db import session_scope, upgrade
from scholarise.email_settings import save_configuration
from scholarise.models import EmailNotification
from scholarise.tasks import get_or_create_branch
from tests.conftest import drain
from tests.support import services
from tests.support.migrated import migrated_copy
from tests.support.smtp import BlackHole, Certificate, SmtpServer, make_certificate
from tests.support.workers import start_worker, stop_worker, wait_until, worker_env

PASSWORD = "Tr0ub4dor&3-smtp"
USER = "mailer"
XSS = "<script>alert('x')</script>"
RECIPIENTS = ["head@example.org", "office@example.org"]

@pytest.fixture
def migrated(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The shared fixture's database, copied from a once-migrated template (fast)."""
    return migrated_copy(settings, tmp_path_factory)



@pytest.fixture
def cert(tmp_path: Path) -> Certificate:
    return make_certificate(tmp_path / "tls")


@pytest.fixture
def mail_overrides() -> dict[str, Any]:
    """Per-test Settings changes (tests parametrize this fixture to change it)."""
    return {}


@pytest.fixture
def settings(settings: Settings, cert: Certificate, mail_overrides: dict[str, Any]) -> Settings:
    quick = {"mail_ca_file": cert.cert_path, "mail_timeout": 3.0, "mail_retry_min_backoff": 0.2,
             "mail_retry_max_backoff": 1.0, "mail_max_attempts": 5}
    return settings.replace(**{**quick, **mail_overrides})


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def configure(settings: Settings, server: SmtpServer | None, *, branch: str | None = None,
              **data: Any) -> None:
    values: dict[str, Any] = {"recipients": RECIPIENTS, **data}
    if server is not None:
        security = {"plain": "none"}.get(server.mode, server.mode)
        values = {"host": "127.0.0.1", "port": server.port, "security": security, "from_address":
                  "noreply@example.org", "from_name": "Scholarise", **values}
        if server.username:
            values.update(username=server.username, password=server.password)
    with session_scope(runtime.current().session_factory) as session:
        branch_id = get_or_create_branch(session, branch).id if branch else None
        save_configuration(session, branch_id, values, settings=settings, updated_by="test")


def people(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"first_name": f"P{i}", "last_name": "Test", "email": f"p{i}@example.org"} for i in range(start, start + n)]


def run_import(broker: dramatiq.Broker, worker: dramatiq.Worker, items: list[dict[str, str]], *,
               branch: str = "Main", title: str = "Import teachers") -> int:
    task_id = actors.create_bulk_task("BULK_USER_CREATION", title, "", {"type": "teacher", "branch": branch,
                                                                         "items": items})
    drain(broker, worker)
    broker.join("emails", fail_fast=True, timeout=60_000)
    worker.join()
    return task_id


def outbox_rows() -> list[EmailNotification]:
    with session_scope(runtime.current().session_factory) as session:
        return list(session.scalars(select(EmailNotification).order_by(EmailNotification.id)))


def assert_secret_never_logged(logs: pytest.LogCaptureFixture, secret: str) -> None:
    encoded = {base64.b64encode(secret.encode()).decode(), base64.b64encode(f"\0{USER}\0{secret}".encode()).decode()}
    for record in logs.records:
        line = record.getMessage() + (logs.handler.format(record) if record.exc_info else "")
        assert secret not in line, f"{record.name} logged the password"
        if not record.name.startswith("mail.log"):  # aiosmtpd (the test's server) echoes the AUTH exchange
            assert not any(e in line for e in encoded), f"{record.name} logged the encoded password"


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_a_completed_import_delivers_one_multipart_email_per_recipient(mode, settings, cert, broker, worker, logs):
    with SmtpServer(mode=mode, certificate=cert, username=USER, password=PASSWORD) as server:
        configure(settings, server)
        task_id = run_import(broker, worker, [*people(6), {"first_name": XSS, "email": f"{XSS}@example.org"}],
                             title=f"Import {XSS}")
        [message] = server.wait_for(1)
    assert sorted(message.rcpt_tos) == sorted(RECIPIENTS) and message.authenticated_as == USER
    assert server.logins == [("PLAIN", True)]
    mime = message.message
    assert mime["Subject"] == (f"[Scholarise #{task_id}] Completed with errors: Import "
                               "<script>alert('x')</script> — 1 of 7 rows failed")
    assert mime["From"] == "Scholarise <noreply@example.org>"
    assert [p.get_content_type() for p in mime.walk()][:4] == ["multipart/mixed", "multipart/alternative",
                                                               "text/plain", "text/html"]
    text_body, html_body = message.part("text/plain"), message.part("text/html")
    for body in (text_body, html_body):
        assert "6" in body and "1" in body and "7" in body
    assert "Created:          6" in text_body and "Failed:           1" in text_body
    assert "<script>" not in html_body and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html_body
    assert message.part("text/csv").count("\n") == 8
    [row] = outbox_rows()
    assert (row.status, row.attempts, row.sender) == ("SENT", 1, "Scholarise <noreply@example.org>")
    assert row.delivered_via == f"smtp://127.0.0.1:{server.port}"
    assert mime["Message-ID"].startswith(f"<scholarise-notification-{row.id}-")
    with session_scope(runtime.current().session_factory) as session:
        stored = session.execute(text("SELECT password_encrypted FROM email_configurations")).scalar_one()
    assert stored and PASSWORD not in stored
    assert_secret_never_logged(logs, PASSWORD)


@pytest.mark.parametrize("mail_overrides", [{"mail_retry_min_backoff": 1.0, "mail_retry_max_backoff": 4.0,
                                             "mail_max_attempts": 20}])
@pytest.mark.slow
def test_an_email_waits_while_smtp_is_down_and_is_delivered_once_when_it_returns(settings, cert, broker, worker,
                                                                                  logs):
    server = SmtpServer(mode="starttls", certificate=cert, username=USER, password=PASSWORD)
    configure(settings, server)  # configured, but not started: connections are refused
    restart = threading.Timer(30.0, server.start)
    restart.start()
    try:
        task_id = actors.create_bulk_task("BULK_USER_CREATION", "Import teachers", "",
                                          {"type": "teacher", "branch": "Main", "items": people(3)})
        drain(broker, worker)
        [row] = outbox_rows()
        assert row.status == "PENDING" and "refused the connection" in (row.last_error or "")
        broker.join("emails", fail_fast=True, timeout=90_000)
        worker.join()
        messages = server.wait_for(1)
    finally:
        restart.cancel()
        restart.join()
        server.stop()
    assert len(messages) == 1 and sorted(messages[0].rcpt_tos) == sorted(RECIPIENTS)
    [row] = outbox_rows()
    assert row.status == "SENT" and row.task_id == task_id
    assert 6 <= row.attempts <= 16, row.attempts  # refused every 1-4 s for 30 s, then delivered
    with session_scope(runtime.current().session_factory) as session:
        log = "\n".join(session.scalars(text("SELECT message FROM task_execution_logs WHERE task_id = :t")
                                        .bindparams(t=task_id)))
    assert f"sent via smtp://127.0.0.1:{server.port} (attempt {row.attempts})" in log
    assert_secret_never_logged(logs, PASSWORD)


def test_per_branch_settings_override_the_global_ones(settings, broker, worker):
    with SmtpServer() as global_server, SmtpServer() as branch_server:
        configure(settings, global_server)
        configure(settings, branch_server, branch="North", recipients=["north@example.org"])
        run_import(broker, worker, people(2), branch="North")
        run_import(broker, worker, people(2, start=10), branch="South")
        [north] = branch_server.wait_for(1)
        [south] = global_server.wait_for(1)
    assert north.rcpt_tos == ["north@example.org"] and sorted(south.rcpt_tos) == sorted(RECIPIENTS)


def test_disabled_notifications_send_nothing(settings, broker, worker):
    with SmtpServer() as server:
        configure(settings, server, enabled=False)
        run_import(broker, worker, people(3))
    assert server.messages == [] and outbox_rows() == []


def test_on_failure_only_sends_nothing_for_a_clean_run(settings, broker, worker):
    with SmtpServer() as server:
        configure(settings, server, notify_on_success=False)
        run_import(broker, worker, people(3))
        assert server.messages == [] and outbox_rows() == []
        run_import(broker, worker, [{"first_name": "A", "email": "nope"}])
        [message] = server.wait_for(1)
    assert "Failed:" in message.message["Subject"]


def test_without_an_smtp_server_emails_are_saved_as_eml_files(settings, broker, worker, logs):
    configure(settings, None)
    run_import(broker, worker, people(2))
    [row] = outbox_rows()
    path = settings.outbox_dir / f"notification-{row.id}.eml"
    assert row.status == "SENT" and row.delivered_via == str(path)
    saved = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert sorted(a.strip() for a in saved["To"].split(",")) == sorted(RECIPIENTS)
    assert [p.get_content_type() for p in saved.walk()] == ["multipart/mixed", "multipart/alternative",
                                                            "text/plain", "text/html"]
    assert any(str(path) in r.getMessage() for r in logs.records if r.name == "actors.mailer")


def test_an_email_already_sent_is_not_sent_again(settings, broker, worker):
    with SmtpServer() as server:
        configure(settings, server)
        run_import(broker, worker, people(1))
        [row] = outbox_rows()
        send_email(row.id)  # a duplicate message, run synchronously
        recover_outbox()
        broker.join("emails")
        worker.join()
    assert len(server.messages) == 1 and outbox_rows()[0].attempts == 1


@pytest.mark.parametrize("mail_overrides", [{"mail_max_attempts": 2}])
def test_after_the_retry_budget_it_is_failed_and_can_be_resent(settings, cert, broker, worker):
    server = SmtpServer()
    configure(settings, server)
    run_import(broker, worker, people(1))
    [row] = outbox_rows()
    assert (row.status, row.attempts) == ("FAILED", 2) and "refused the connection" in (row.last_error or "")
    with server:
        data = resend(row.id, by="admin")
        broker.join("emails")
        worker.join()
        server.wait_for(1)
    assert data["status"] == "PENDING"
    [row] = outbox_rows()
    assert (row.status, row.attempts, len(server.messages)) == ("SENT", 1, 1)


def test_recover_outbox_sends_what_a_restart_left_pending(settings, broker, worker):
    with SmtpServer() as server:
        configure(settings, server)
        with session_scope(runtime.current().session_factory) as session:
            session.add(EmailNotification(kind="task_completed", recipients=RECIPIENTS, subject="Left over",
                                          body_text="t", body_html="<p>h</p>"))
        assert recover_outbox() == 1
        broker.join("emails")
        worker.join()
        server.wait_for(1)


@pytest.mark.parametrize("mail_overrides", [{"mail_timeout": 1.0}])
def test_test_connection_gives_a_distinct_human_reason_for_each_failure(settings, cert, broker):
    results: dict[str, Any] = {}
    factory = runtime.current().session_factory

    def check(label: str, *, port: int, security: str, password: str = PASSWORD, ca: bool = True,
              to: str | None = None) -> None:
        with session_scope(factory) as session:
            save_configuration(session, None, {"host": "127.0.0.1", "port": port, "security": security,
                                               "username": USER, "password": password, "from_address":
                                               "noreply@example.org", "recipients": RECIPIENTS}, settings=settings)
            local = settings if ca else settings.replace(mail_ca_file=None)
            result = (smtp_check.send_test_email(session, branch_id=None, settings=local, to=to) if to
                      else smtp_check.test_connection(session, branch_id=None, settings=local))
        results[label] = result

    with SmtpServer(mode="starttls", certificate=cert, username=USER, password=PASSWORD, refuse=("gone@example.org",)
                    ) as starttls, SmtpServer(mode="ssl", certificate=cert, username=USER, password=PASSWORD) as ssl:
        check("ok", port=starttls.port, security="starttls")
        check("sent", port=ssl.port, security="ssl", to="someone@example.org")
        check("ssl on a starttls port", port=starttls.port, security="ssl")
        check("starttls on an ssl port", port=ssl.port, security="starttls")
        check("certificate", port=ssl.port, security="ssl", ca=False)
        check("auth", port=starttls.port, security="starttls", password="wrong-password")
        check("recipient", port=starttls.port, security="starttls", to="gone@example.org")
        refused_port = starttls.port
    check("refused", port=refused_port, security="starttls")
    with BlackHole() as hole:
        check("timeout", port=hole.port, security="starttls")
    assert [(label, r.ok) for label, r in results.items() if r.ok] == [("ok", True), ("sent", True)]
    kinds = {label: r.kind for label, r in results.items()}
    assert kinds == {"ok": "ok", "sent": "ok", "ssl on a starttls port": "tls_mismatch",
                     "starttls on an ssl port": "tls_mismatch", "certificate": "certificate", "auth": "auth",
                     "recipient": "recipient_refused", "refused": "refused", "timeout": "timeout"}
    messages = [r.message for r in results.values() if not r.ok]
    assert len(set(messages)) == len(messages) == 7
    assert "speaks plain SMTP" in results["ssl on a starttls port"].message
    assert "expects TLS from the first byte" in results["starttls on an ssl port"].message
    assert "self-signed" in results["certificate"].message
    assert "rejected the user name or password" in results["auth"].message
    assert "gone@example.org" in results["recipient"].message
    assert all(PASSWORD not in m and "wrong-password" not in m for m in messages)


def test_the_cli_checks_and_sends_through_a_branchs_settings(settings, cert, broker, monkeypatch):
    from admin.cli import main

    monkeypatch.setenv("SCHOLARISE_INSTANCE_PATH", str(settings.instance_path))
    monkeypatch.setenv("SCHOLARISE_SECRET_KEY", settings.secret_key)
    monkeypatch.setenv("SCHOLARISE_MAIL_CA_FILE", str(cert.cert_path))
    monkeypatch.setenv("SCHOLARISE_MAIL_TIMEOUT", "3")
    runner = CliRunner()
    with SmtpServer(mode="starttls", certificate=cert, username=USER, password=PASSWORD) as server:
        with session_scope(runtime.current().session_factory) as session:
            get_or_create_branch(session, "North")
        setup = runner.invoke(main, ["email", "set", "--branch", "North", "--host", "127.0.0.1", "--port",
                                     str(server.port), "--security", "starttls", "--username", USER, "--password",
                                     "--from-address", "noreply@example.org", "--recipients", "north@example.org"],
                              input=f"{PASSWORD}\n{PASSWORD}\n")
        assert setup.exit_code == 0, setup.output
        ok = runner.invoke(main, ["email", "test", "--branch", "North"])
        sent = runner.invoke(main, ["email", "send-test", "--branch", "North"])
        server.wait_for(1)
        shown = runner.invoke(main, ["email", "show", "--branch", "North", "--json"])
    down = runner.invoke(main, ["email", "test", "--branch", "North"])
    missing = runner.invoke(main, ["email", "test", "--branch", "Nowhere"])
    assert (ok.exit_code, sent.exit_code, down.exit_code, missing.exit_code) == (0, 0, 1, 1)
    assert "logged in" in ok.output and "Test email sent to north@example.org" in sent.output
    assert "refused the connection" in down.output and "no branch named 'Nowhere'" in missing.output
    assert server.messages[0].rcpt_tos == ["north@example.org"]
    assert '"has_password": true' in shown.output and PASSWORD not in shown.output



@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.slow
def test_worker_processes_on_redis_deliver_with_the_environment_settings(tmp_path, cert):
    """Production shape: Redis, PostgreSQL, a Dramatiq worker process, SMTP from Flask-Mail's MAIL_* variables."""
    redis_url = services.require("redis", services.redis_url())
    base = services.require("postgres", services.postgres_url())
    services.flush_redis(redis_url)
    log = tmp_path / "worker.log"
    with SmtpServer(mode="starttls", certificate=cert, username=USER, password=PASSWORD) as server, \
            services.temporary_postgres_database(base) as db_url:
        env = worker_env(REDIS_URL=redis_url, DATABASE_URL=db_url, SCHOLARISE_INSTANCE_PATH=str(tmp_path / "i"),
                         SCHOLARISE_SECRET_KEY="redis-test-secret-key-0123", MAIL_SERVER="127.0.0.1",
                         MAIL_PORT=str(server.port), MAIL_USE_TLS="yes", MAIL_USE_SSL="no", MAIL_USERNAME=USER,
                         MAIL_PASSWORD=PASSWORD, MAIL_DEFAULT_SENDER="Scholarise <noreply@example.org>",
                         SCHOLARISE_ADMIN_EMAILS=",".join(RECIPIENTS), SCHOLARISE_MAIL_CA_FILE=str(cert.cert_path))
        settings = Settings.from_env(env)
        upgrade(settings)
        actors.configure(settings)
        worker = start_worker(env, threads=2, log=log, queues=("imports", "emails"))
        try:
            task_id = actors.create_bulk_task("BULK_USER_CREATION", "Redis import", "",
                                              {"type": "teacher", "branch": "Main", "items": people(15)})
            [message] = server.wait_for(1, timeout=90)
            wait_until(lambda: outbox_rows()[0].status == "SENT", timeout=30, what="the outbox row to say SENT")
        finally:
            stop_worker(worker)
            runtime.set_runtime(None)
            services.flush_redis(redis_url)
    assert sorted(message.rcpt_tos) == sorted(RECIPIENTS) and message.authenticated_as == USER
    assert message.message["Subject"].startswith(f"[Scholarise #{task_id}] Completed: Redis import — 15 created")
    assert PASSWORD not in log.read_text()
