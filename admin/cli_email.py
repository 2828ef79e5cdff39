"""``scholarise email …``: configure, check and operate the email notifications from the command line.

Every command calls a service in ``scholarise`` (settings, connection check, outbox); exit code 1
means bad input or a failed check, and the message says why.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from scholarise.config import Settings
from scholarise.errors import ScholariseError

err = Console(stderr=True)
out = Console()


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ScholariseError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    from scholarise.db import make_engine, make_session_factory, session_scope, upgrade

    upgrade(settings)
    engine = make_engine(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            yield session
    except ScholariseError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()


def _branch_id(session: Session, name: str | None) -> int | None:
    from scholarise.models import Branch

    if not name:
        return None
    branch_id = session.scalar(select(Branch.id).where(Branch.name == name.strip()))
    if branch_id is None:
        raise click.ClickException(f"There is no branch named {name!r} (branches are created by their first import).")
    return int(branch_id)


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


branch_option = click.option("--branch", help="Branch name; omit for the global settings.")


@click.group("email")
def email_group() -> None:
    """Email notifications: settings, connection test, test email, outbox."""


@email_group.command("show")
@branch_option
@click.option("--json", "as_json", is_flag=True)
def show_command(branch: str | None, as_json: bool) -> None:
    """Show the stored settings and what is in effect (passwords are never shown)."""
    from scholarise.email_settings import describe

    settings = _settings()
    with _session(settings) as session:
        data = describe(session, _branch_id(session, branch), settings=settings)
    if as_json:
        _print_json(data)
        return
    effective = data["effective"]
    smtp = effective["smtp"]
    lines = [f"Settings in effect for {branch or 'all branches (global)'} (from {effective['source']}):",
             f"  enabled: {effective['enabled']}, on success: {effective['notify_on_success']}, on failure: "
             f"{effective['notify_on_failure']}, details: {effective['include_task_details']}, error log: "
             f"{effective['include_error_log']}",
             f"  recipients ({effective['recipients_source']}): {', '.join(effective['recipients']) or 'none'}"]
    if smtp:
        lines.append(f"  server ({smtp['source']}): {smtp['host']}:{smtp['port']} {smtp['security']}, user "
                     f"{smtp['username'] or '-'}, password {'set' if smtp['has_password'] else 'not set'}, "
                     f"from {smtp['sender']}")
    else:
        lines.append(f"  no SMTP server: emails are saved as .eml files in {settings.outbox_dir}")
    for line in lines:  # every value here was typed by someone: shown as written, never as markup
        err.print(escape(line))


@email_group.command("set")
@branch_option
@click.option("--host", help="SMTP host name ('' to use the next level's server).")
@click.option("--port", type=click.IntRange(1, 65535))
@click.option("--security", type=click.Choice(["none", "starttls", "ssl"]))
@click.option("--username")
@click.option("--password", "ask_password", is_flag=True, help="Prompt for the password (never on the command line).")
@click.option("--clear-password", is_flag=True)
@click.option("--from-address")
@click.option("--from-name")
@click.option("--recipients", help="Comma-separated admin recipients ('' to use the next level's).")
@click.option("--enabled/--disabled", default=None)
@click.option("--notify-on-success/--no-notify-on-success", default=None)
@click.option("--notify-on-failure/--no-notify-on-failure", default=None)
@click.option("--include-task-details/--no-include-task-details", default=None)
@click.option("--include-error-log/--no-include-error-log", default=None)
def set_command(branch: str | None, ask_password: bool, **options: Any) -> None:
    """Create or change settings; only the options given change."""
    from scholarise.email_settings import save_configuration

    data = {k: v for k, v in options.items() if v is not None and not (k == "clear_password" and not v)}
    if ask_password:
        data["password"] = click.prompt("SMTP password", hide_input=True, confirmation_prompt=True)
    settings = _settings()
    with _session(settings) as session:
        row = save_configuration(session, _branch_id(session, branch), data, settings=settings, updated_by="cli")
        scope = row.scope
    err.print(escape(f"Email settings saved ({scope}). Check them with: scholarise email test"
                     + (f" --branch {branch!r}" if branch else "")))


def _report(result: Any, as_json: bool) -> None:
    if as_json:
        _print_json(result.to_dict())
    elif result.ok:
        err.print(f"[green]OK[/] {escape(result.message)}")
    else:
        err.print(f"[red]{escape(result.kind.replace('_', ' '))}:[/] {escape(result.message)}")
    if not result.ok:
        sys.exit(1)


@email_group.command("test")
@branch_option
@click.option("--to", help="Also send the test email to this address.")
@click.option("--json", "as_json", is_flag=True)
def test_command(branch: str | None, to: str | None, as_json: bool) -> None:
    """Connect to the SMTP server, negotiate TLS and log in, as configured (with --to: send the test email)."""
    from scholarise.smtp_check import send_test_email, test_connection

    settings = _settings()
    with _session(settings) as session:
        branch_id = _branch_id(session, branch)
        result = test_connection(session, branch_id=branch_id, settings=settings)
        if result.ok and to:
            result = send_test_email(session, branch_id=branch_id, settings=settings, to=to)
    _report(result, as_json)


@email_group.command("send-test")
@branch_option
@click.option("--to", help="Recipient (default: the configured admin recipients).")
@click.option("--json", "as_json", is_flag=True)
def send_test_command(branch: str | None, to: str | None, as_json: bool) -> None:
    """Send the test email now through the settings of the branch (or the global ones)."""
    from scholarise.smtp_check import send_test_email

    settings = _settings()
    with _session(settings) as session:
        result = send_test_email(session, branch_id=_branch_id(session, branch), settings=settings, to=to)
    _report(result, as_json)


@email_group.command("outbox")
@click.option("--status", type=click.Choice(["PENDING", "SENDING", "SENT", "FAILED"], case_sensitive=False))
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True)
def outbox_command(status: str | None, limit: int, as_json: bool) -> None:
    """List queued, sent and failed emails, newest first."""
    from scholarise.outbox import list_notifications, notification_data

    settings = _settings()
    with _session(settings) as session:
        rows = [notification_data(n) for n in list_notifications(session, status=status, limit=limit)]
    if as_json:
        _print_json(rows)
        return
    table = Table("Id", "Task", "Status", "Attempts", "Recipients", "Subject", "Last error")
    for n in rows:
        table.add_row(str(n["id"]), str(n["task_id"] or ""), n["status"], str(n["attempts"]),
                      escape(", ".join(n["recipients"])), escape(n["subject"]), escape(n["last_error"] or ""))
    out.print(table)


@email_group.command("resend")
@click.argument("notification_id", type=int)
def resend_command(notification_id: int) -> None:
    """Queue a failed email again and try to deliver it now; if that fails, the workers keep retrying."""
    from actors.notifications import mailer_for
    from scholarise.db import make_engine, make_session_factory
    from scholarise.outbox import deliver, resend

    settings = _settings()
    with _session(settings) as session:
        resend(session, notification_id, by="cli")
    engine = make_engine(settings)
    try:
        outcome = deliver(make_session_factory(engine), notification_id, mailer=mailer_for(settings),
                          settings=settings)
    finally:
        engine.dispose()
    err.print(escape(outcome.message))
    if outcome.status == "failed":
        sys.exit(1)


@email_group.command("rotate-key")
def rotate_key_command() -> None:
    """Re-encrypt stored SMTP passwords under the current SCHOLARISE_SECRET_KEY (see docs/email.md)."""
    from scholarise.email_settings import rotate_passwords

    settings = _settings()
    with _session(settings) as session:
        count = rotate_passwords(session, settings)
    err.print(f"{count} stored password(s) re-encrypted with the current key. You can now remove the old key "
              "from SCHOLARISE_SECRET_KEY_FALLBACKS.")
