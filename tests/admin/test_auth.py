"""Signing in and out: passwords, rate limiting, disabled accounts, CSRF, safe redirects, the account CLI."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from scholarise.db import session_scope
from scholarise.errors import InputError
from scholarise.models import AdminUser, SignInAttempt, utcnow
from scholarise.users import SignInLimits, authenticate, create_user, ensure_first_admin, set_active
from tests.admin.conftest import ADMIN, PASSWORD, STAFF_A, Accounts, client_as, csrf_token, make_task, sign_in


def _attempts(session_factory: sessionmaker[Session]) -> int:
    with session_scope(session_factory) as s:
        return s.scalar(select(func.count()).select_from(SignInAttempt)) or 0


def test_signing_in_with_the_right_password_opens_the_site(app: Flask, accounts: Accounts) -> None:
    client = app.test_client()
    assert client.get("/admin/").headers["Location"].startswith("/login?next=/admin/")
    page = client.get("/login")
    response = client.post("/login", data={"csrf_token": csrf_token(page.text), "email": f"  {ADMIN.upper()} ",
                                           "password": PASSWORD, "next": "/admin/tasks/"})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/tasks/"
    home = client.get("/admin/")
    assert home.status_code == 200 and "Hello, Ada Admin" in home.text


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(app: Flask, accounts: Accounts) -> None:
    client = app.test_client()
    token = csrf_token(client.get("/login").text)
    wrong = client.post("/login", data={"csrf_token": token, "email": ADMIN, "password": "nope-nope-nope"})
    unknown = client.post("/login", data={"csrf_token": token, "email": "who@school.example", "password": "x" * 12})
    assert wrong.status_code == unknown.status_code == 401
    assert "The email or password is not right" in wrong.text and "The email or password is not right" in unknown.text
    assert client.get("/admin/").status_code == 302  # still signed out


def test_five_failures_lock_the_account_from_that_address_even_for_the_right_password(
        app: Flask, accounts: Accounts, session_factory: sessionmaker[Session]) -> None:
    client = app.test_client()
    token = csrf_token(client.get("/login").text)
    for _ in range(5):
        assert client.post("/login", data={"csrf_token": token, "email": ADMIN, "password": "guess-guess"}
                           ).status_code == 401
    locked = client.post("/login", data={"csrf_token": token, "email": ADMIN, "password": PASSWORD})
    assert locked.status_code == 429 and "Too many failed sign-in attempts" in locked.text
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert client.get("/admin/").status_code == 302
    # Another account from the same address is not locked by these five.
    assert client.post("/login", data={"csrf_token": token, "email": STAFF_A, "password": PASSWORD}).status_code == 302


def test_the_lock_lifts_when_the_failures_leave_the_window(session_factory: sessionmaker[Session],
                                                           accounts: Accounts) -> None:
    limits = SignInLimits(per_account_address=3, per_address=10, window=timedelta(minutes=15))
    start = utcnow()
    with session_scope(session_factory) as s:
        for i in range(3):
            assert not authenticate(s, ADMIN, "bad", "10.0.0.1", limits=limits, now=start + timedelta(seconds=i)).ok
        locked = authenticate(s, ADMIN, PASSWORD, "10.0.0.1", limits=limits, now=start + timedelta(minutes=1))
        assert not locked.ok and locked.retry_after and 0 < locked.retry_after <= 15 * 60
        elsewhere = authenticate(s, ADMIN, PASSWORD, "10.0.0.2", limits=limits, now=start + timedelta(minutes=1))
        assert elsewhere.ok  # the lock is per account and address
        later = authenticate(s, ADMIN, PASSWORD, "10.0.0.1", limits=limits, now=start + timedelta(minutes=16))
        assert later.ok


def test_many_accounts_guessed_from_one_address_lock_that_address(session_factory: sessionmaker[Session],
                                                                  accounts: Accounts) -> None:
    limits = SignInLimits(per_account_address=5, per_address=4)
    with session_scope(session_factory) as s:
        for i in range(4):
            authenticate(s, f"user{i}@school.example", "bad", "10.9.9.9", limits=limits)
        assert authenticate(s, ADMIN, PASSWORD, "10.9.9.9", limits=limits).retry_after
        assert authenticate(s, ADMIN, PASSWORD, "10.9.9.8", limits=limits).ok


def test_a_success_clears_the_count_for_that_account_and_address(session_factory: sessionmaker[Session],
                                                                 accounts: Accounts) -> None:
    limits = SignInLimits(per_account_address=3, per_address=100)
    with session_scope(session_factory) as s:
        for _ in range(2):
            authenticate(s, ADMIN, "typo", "10.0.0.3", limits=limits)
        assert authenticate(s, ADMIN, PASSWORD, "10.0.0.3", limits=limits).ok
        for _ in range(2):
            authenticate(s, ADMIN, "typo", "10.0.0.3", limits=limits)
        assert authenticate(s, ADMIN, PASSWORD, "10.0.0.3", limits=limits).ok


def test_a_disabled_account_cannot_sign_in_and_is_signed_out_at_once(
        app: Flask, accounts: Accounts, session_factory: sessionmaker[Session]) -> None:
    signed_in = client_as(app, accounts.staff_a_id)
    assert signed_in.get("/admin/").status_code == 200
    with session_scope(session_factory) as s:
        set_active(s, STAFF_A, False)
    assert signed_in.get("/admin/").status_code == 302
    client = app.test_client()
    token = csrf_token(client.get("/login").text)
    refused = client.post("/login", data={"csrf_token": token, "email": STAFF_A, "password": PASSWORD})
    assert refused.status_code == 401 and "disabled" in refused.text


def test_signing_out_needs_a_post_with_the_csrf_token(app: Flask, accounts: Accounts) -> None:
    client = sign_in(app.test_client(), ADMIN)
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 400  # no token: refused, still signed in
    assert client.get("/admin/").status_code == 200
    token = csrf_token(client.get("/admin/").text)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/admin/").status_code == 302


def test_a_sign_in_post_without_the_csrf_token_is_refused_and_not_counted(
        app: Flask, accounts: Accounts, session_factory: sessionmaker[Session]) -> None:
    client = app.test_client()
    response = client.post("/login", data={"email": ADMIN, "password": PASSWORD})
    assert response.status_code == 400
    assert "did not come from this site" in response.text
    assert client.get("/admin/").status_code == 302
    assert _attempts(session_factory) == 0


def test_an_action_post_without_the_csrf_token_changes_nothing(
        app: Flask, accounts: Accounts, session_factory: sessionmaker[Session]) -> None:
    from scholarise.models import BackgroundTask

    task_id = make_task(session_factory, accounts.branch_a)
    client = client_as(app, accounts.admin_id)
    for url, data in ((f"/admin/tasks/{task_id}/cancel", {}), ("/admin/tasks/action/",
                                                               {"action": "cancel", "rowid": str(task_id)})):
        response = client.post(url, data=data)
        assert response.status_code == 400 and "did not come from this site" in response.text
    json_refusal = client.post(f"/admin/tasks/{task_id}/cancel", headers={"Accept": "application/json"})
    assert json_refusal.status_code == 400 and json_refusal.is_json
    with session_scope(session_factory) as s:
        assert s.get(BackgroundTask, task_id).status == "PENDING"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"])
def test_sign_in_never_redirects_to_another_site(app: Flask, accounts: Accounts, target: str) -> None:
    client = app.test_client()
    token = csrf_token(client.get("/login").text)
    response = client.post("/login", data={"csrf_token": token, "email": ADMIN, "password": PASSWORD, "next": target})
    assert response.headers["Location"] == "/admin/"


def test_accounts_are_checked_when_they_are_made(session: Session) -> None:
    with pytest.raises(InputError, match="Staff accounts need a branch"):
        create_user(session, "s@school.example", PASSWORD, role="staff")
    with pytest.raises(InputError, match="at least 10 characters"):
        create_user(session, "a@school.example", "short", role="admin")
    with pytest.raises(InputError, match="not an email address"):
        create_user(session, "not-an-email", PASSWORD, role="admin")
    with pytest.raises(InputError, match="role must be one of"):
        create_user(session, "a@school.example", PASSWORD, role="owner")
    user = create_user(session, "A@School.Example", PASSWORD, role="admin")
    with pytest.raises(InputError, match="already an account"):
        create_user(session, "a@school.example", PASSWORD, role="admin")
    assert user.email == "a@school.example"
    assert PASSWORD not in user.password_hash and PASSWORD not in repr(user) and user.password_hash not in repr(user)


def test_the_first_admin_is_made_once_with_a_generated_password(session: Session) -> None:
    made = ensure_first_admin(session)
    assert made is not None
    user, password = made
    assert user.role == "admin" and len(password) >= 12
    assert authenticate(session, user.email, password, "127.0.0.1").ok
    assert ensure_first_admin(session) is None


def test_create_admin_prints_a_generated_password_once_and_logs_nothing(
        migrated, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        session_factory: sessionmaker[Session]) -> None:
    from admin.cli import main

    monkeypatch.setenv("SCHOLARISE_INSTANCE_PATH", str(migrated.instance_path))
    monkeypatch.setenv("DATABASE_URL", migrated.database_url)
    result = CliRunner().invoke(main, ["create-admin", "--email", "head@school.example", "--generate"])
    assert result.exit_code == 0, result.output
    password = result.output.split("store it safely): ")[1].split()[0]
    assert result.output.count(password) == 1
    assert password not in caplog.text
    with session_scope(session_factory) as s:
        assert authenticate(s, "head@school.example", password, "127.0.0.1").ok
    staff = CliRunner().invoke(main, ["users", "create", "x@school.example", "--role", "staff", "--generate"])
    assert staff.exit_code == 2 and "--branch" in staff.output
    listed = CliRunner().invoke(main, ["users", "list"])
    assert "head@school.example" in listed.output


def test_the_demo_announcement_makes_the_first_admin_only_once(migrated, capsys: pytest.CaptureFixture[str],
                                                               session_factory: sessionmaker[Session]) -> None:
    from admin.cli_users import announce_sign_in

    announce_sign_in(migrated, "http://127.0.0.1:5000")
    first = capsys.readouterr().err
    assert "Sign in at http://127.0.0.1:5000/login" in first
    assert "email:    admin@example.org" in first and "password: " in first
    announce_sign_in(migrated, "http://127.0.0.1:5000")
    second = capsys.readouterr().err
    assert "with your admin account" in second and "password:" not in second
    with session_scope(session_factory) as s:
        assert s.scalar(select(func.count()).select_from(AdminUser)) == 1
