"""Errors of the services a command needs, as one line a person can act on, never with a secret.

A database that cannot be reached or opened ends any ``scholarise`` command with a message naming
``DATABASE_URL`` (password masked) instead of a traceback.
"""

from __future__ import annotations

import re
from typing import Any

import click

from scholarise.config import Settings
from scholarise.errors import ScholariseError


def safe_url(url: str) -> str:
    """A database or Redis URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return "(unparsable URL)"


def _database_problem(exc: Exception) -> str:
    """One line for a database that cannot be reached or opened, naming DATABASE_URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        url = Settings.from_env().database_url
    except ScholariseError:
        url = ""
    reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["no reason given"])[0].rstrip(".")
    try:
        password = make_url(url).password if url else None
    except Exception:  # noqa: BLE001 - only to hide it
        password = None
    if password:  # drivers do not quote it, but never risk it (as a whole word: a password "p" leaves "port" be)
        reason = re.sub(rf"(?<![A-Za-z0-9]){re.escape(str(password))}(?![A-Za-z0-9])", "***", reason)
    return (f"The database at DATABASE_URL={safe_url(url)} cannot be used: {reason}. Check DATABASE_URL and that "
            "the database server runs and accepts connections (for SQLite: that its folder exists and is writable).")


class CommandGroup(click.Group):
    """The ``scholarise`` group: a database that does not answer ends any command with one clear error."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import InterfaceError, OperationalError

        try:
            return super().invoke(ctx)
        except (OperationalError, InterfaceError) as exc:
            raise click.ClickException(_database_problem(exc)) from None
