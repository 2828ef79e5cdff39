"""Accounts of the admin site from the command line: ``create-admin`` and ``users create|list|...``.

Passwords are read from a hidden prompt (or ``--generate``, printed once to the terminal), never
from a command-line argument (which would land in the shell history and the process list), and
never logged.
"""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape

from scholarise.errors import ScholariseError


def _factory() -> Any:
    from admin.cli import load_settings
    from scholarise.db import make_engine, make_session_factory, upgrade

    settings = load_settings()
    upgrade(settings)
    return make_session_factory(make_engine(settings))


def _password(generate: bool) -> tuple[str, bool]:
    from scholarise.users import generate_password

    if generate:
        return generate_password(), True
    return click.prompt("Password (10 characters or more)", hide_input=True, confirmation_prompt=True), False


def _create(email: str, role: str, branch: str | None, name: str, generate: bool) -> None:
    from admin.cli import err
    from scholarise.db import session_scope
    from scholarise.users import create_user

    password, shown = _password(generate)
    try:
        with session_scope(_factory()) as session:
            user = create_user(session, email, password, role=role, branch=branch, name=name)
            where = f" of branch {user.branch.name}" if user.branch and role == "staff" else ""
            summary = f"{role.title()} account {user.email}{where} created."
    except ScholariseError as exc:
        raise click.ClickException(str(exc)) from None
    err.print(escape(summary))
    if shown:
        err.print(f"Password (shown once, store it safely): [bold]{password}[/]", highlight=False)


@click.command("create-admin")
@click.option("--email", prompt="Email", help="The sign-in email of the new administrator.")
@click.option("--name", default="", help="The name shown in the site.")
@click.option("--generate", is_flag=True, help="Generate a password and print it once instead of prompting.")
def create_admin_command(email: str, name: str, generate: bool) -> None:
    """Create an administrator account for the admin site."""
    _create(email, "admin", None, name, generate)


@click.group("users")
def users_group() -> None:
    """Accounts of the admin site (administrators and staff)."""


@users_group.command("create")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(["admin", "staff"]),
              help="admin: every branch, services and email settings; staff: import and one branch's tasks.")
@click.option("--branch", help="The branch (campus) a staff member works for; created if new.")
@click.option("--name", default="", help="The name shown in the site.")
@click.option("--generate", is_flag=True, help="Generate a password and print it once instead of prompting.")
def create_user_command(email: str, role: str, branch: str | None, name: str, generate: bool) -> None:
    """Create an account."""
    if role == "staff" and not branch:
        raise click.UsageError("A staff account belongs to one branch: add --branch NAME.")
    _create(email, role, branch if role == "staff" else None, name, generate)


@users_group.command("list")
def list_users_command() -> None:
    """List the accounts."""
    from rich.table import Table

    from admin.cli import out
    from scholarise.db import session_scope
    from scholarise.users import list_users

    table = Table("Email", "Name", "Role", "Branch", "Active", "Last sign-in")
    with session_scope(_factory()) as session:
        for user in list_users(session):
            table.add_row(escape(user.email), escape(user.name or ""), user.role,
                          escape(user.branch.name) if user.branch else "",
                          "yes" if user.active else "no",
                          user.last_login_at.strftime("%Y-%m-%d %H:%M UTC") if user.last_login_at else "never")
    out.print(table)


@users_group.command("set-password")
@click.argument("email")
@click.option("--generate", is_flag=True, help="Generate a password and print it once instead of prompting.")
def set_password_command(email: str, generate: bool) -> None:
    """Replace an account's password."""
    from admin.cli import err
    from scholarise.db import session_scope
    from scholarise.users import set_password

    password, shown = _password(generate)
    try:
        with session_scope(_factory()) as session:
            set_password(session, email, password)
    except ScholariseError as exc:
        raise click.ClickException(str(exc)) from None
    err.print(f"The password of {escape(email)} was changed.")
    if shown:
        err.print(f"New password (shown once): [bold]{password}[/]", highlight=False)


def _set_active(email: str, active: bool) -> None:
    from admin.cli import err
    from scholarise.db import session_scope
    from scholarise.users import set_active

    try:
        with session_scope(_factory()) as session:
            set_active(session, email, active)
    except ScholariseError as exc:
        raise click.ClickException(str(exc)) from None
    err.print(f"{escape(email)} is {'enabled' if active else 'disabled'}.")


@users_group.command("disable")
@click.argument("email")
def disable_command(email: str) -> None:
    """Disable an account (it is signed out on its next request)."""
    _set_active(email, False)


@users_group.command("enable")
@click.argument("email")
def enable_command(email: str) -> None:
    """Enable a disabled account."""
    _set_active(email, True)


def announce_sign_in(settings: Any, url: str) -> None:
    """For ``make run``: make the first admin if there is none and say how to sign in.

    A generated password is printed to the terminal once and never logged.
    """
    from admin.cli import err
    from scholarise.db import make_engine, make_session_factory, session_scope
    from scholarise.users import ensure_first_admin

    engine = make_engine(settings)
    try:
        with session_scope(make_session_factory(engine)) as session:
            made = ensure_first_admin(session)
            created = (made[0].email, made[1]) if made else None
    finally:
        engine.dispose()
    if created is None:
        err.print(f"Sign in at {escape(url)}/login with your admin account "
                  "(scholarise users set-password EMAIL resets a password).")
        return
    email, password = created
    # One line each, never wrapped, so the password and the URL can be copied whole.
    err.print(f"[bold]Sign in at {escape(url)}/login[/]", soft_wrap=True, highlight=False)
    err.print(f"  email:    {escape(email)}", soft_wrap=True, highlight=False)
    err.print(f"  password: {password}", soft_wrap=True, highlight=False)
    err.print("  (shown only this once; change it with: scholarise users set-password EMAIL)", soft_wrap=True,
              highlight=False)


def register(group: click.Group) -> None:
    """Add the account commands to the ``scholarise`` group."""
    group.add_command(create_admin_command)
    group.add_command(users_group)
