"""``scholarise create-token``, ``revoke-token`` and ``tokens``: API tokens for other applications.

The token is printed once, on stdout alone (so ``TOKEN=$(scholarise create-token ...)`` works);
everything meant for people goes to stderr. Only its hash is stored.
"""

from __future__ import annotations

import click
from rich.markup import escape

from scholarise.errors import ScholariseError


def _session_factory():  # type: ignore[no-untyped-def]
    from admin.cli import load_settings
    from scholarise.db import make_engine, make_session_factory, upgrade

    settings = load_settings()
    upgrade(settings)
    return make_session_factory(make_engine(settings))


@click.command("create-token")
@click.option("--role", required=True, type=click.Choice(["admin", "staff"]),
              help="admin: every branch, services and email settings; staff: one branch's tasks.")
@click.option("--branch", help="Branch (campus) name of a staff token; created if new.")
@click.option("--name", help="What the token is for, e.g. the application that uses it.")
def create_token_command(role: str, branch: str | None, name: str | None) -> None:
    """Create an API token and print it once (it cannot be shown again)."""
    from admin.cli import err
    from scholarise.api_tokens import create_token
    from scholarise.db import session_scope
    from scholarise.tasks import get_or_create_branch

    if role == "staff" and not branch:
        raise click.UsageError("A staff token belongs to one branch: add --branch NAME.")
    if role == "admin" and branch:
        raise click.UsageError("Admin tokens see every branch; --branch is only for staff tokens.")
    try:
        with session_scope(_session_factory()) as session:
            where = get_or_create_branch(session, branch) if branch else None
            new = create_token(session, role=role, branch=where, name=name)
            token_id, prefix, label = new.token.id, new.token.prefix, new.token.name
    except ScholariseError as exc:
        raise click.ClickException(str(exc)) from None
    scope = f"branch {where.name!r}" if where else "every branch"
    err.print(escape(f"API token #{token_id} {label!r} ({role}, {scope}) created; it starts with {prefix}."))
    err.print("Copy it now: it is shown only once. Send it as the header 'Authorization: Bearer <token>'.")
    click.echo(new.secret)


@click.command("revoke-token")
@click.argument("token_id", type=int)
def revoke_token_command(token_id: int) -> None:
    """Revoke API token TOKEN_ID; requests with it are refused from now on."""
    from admin.cli import err
    from scholarise.api_tokens import revoke_token
    from scholarise.db import session_scope

    try:
        with session_scope(_session_factory()) as session:
            token, changed = revoke_token(session, token_id)
            label = str(token)
    except ScholariseError as exc:
        raise click.ClickException(str(exc)) from None
    err.print(escape(f"API token #{token_id} {label} {'revoked' if changed else 'was already revoked'}."))


@click.command("tokens")
def tokens_command() -> None:
    """List API tokens, one a line (name, first characters, role, branch, use); never the tokens themselves."""
    from scholarise.api_tokens import list_tokens
    from scholarise.db import session_scope

    with session_scope(_session_factory()) as session:
        lines = [
            f"#{t.id}\t{t.name}\t{t.prefix}…\t{t.role}\t{t.branch.name if t.branch else '(every branch)'}\t"
            f"created {_when(t.created_at)}\tlast used {_when(t.last_used_at) or 'never'}\t"
            f"{'revoked ' + _when(t.revoked_at) if t.revoked_at else 'active'}"
            for t in list_tokens(session)
        ]
    click.echo("\n".join(lines) if lines else "No API tokens yet: scholarise create-token --role admin|staff")


def _when(value) -> str:  # type: ignore[no-untyped-def]
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


def register(group: click.Group) -> None:
    """Add the token commands to the ``scholarise`` command group."""
    for command in (create_token_command, revoke_token_command, tokens_command):
        group.add_command(command)
