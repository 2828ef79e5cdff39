"""``scholarise create-token`` / ``tokens`` / ``revoke-token``, run the way an administrator runs them."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from admin.cli import main
from scholarise.api_tokens import verify_token
from scholarise.config import Settings
from scholarise.db import make_engine, make_session_factory, session_scope


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in ("DATABASE_URL", "REDIS_URL", "CLERK_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCHOLARISE_INSTANCE_PATH", str(tmp_path / "instance"))
    runner = CliRunner()
    return lambda *args: runner.invoke(main, list(args), catch_exceptions=False)


def verify(tmp_path: Path, secret: str):
    engine = make_engine(Settings(instance_path=tmp_path / "instance"))
    try:
        with session_scope(make_session_factory(engine)) as session:
            token = verify_token(session, secret)
            return token.role, token.branch.name if token.branch else None
    finally:
        engine.dispose()


def test_create_token_prints_the_token_alone_on_stdout_once(cli, tmp_path: Path) -> None:
    result = cli("create-token", "--role", "staff", "--branch", "North Campus", "--name", "timetable")
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip()
    assert secret.startswith("scht_") and "\n" not in secret
    assert "shown only once" in result.stderr
    assert verify(tmp_path, secret) == ("staff", "North Campus")
    listing = cli("tokens")
    assert "timetable" in listing.stdout and secret not in listing.stdout and secret[:12] in listing.stdout


def test_a_staff_token_without_a_branch_is_refused(cli) -> None:
    result = cli("create-token", "--role", "staff")
    assert result.exit_code == 2
    assert "--branch" in result.stderr


def test_revoke_token_stops_the_token_and_says_so_twice(cli, tmp_path: Path) -> None:
    secret = cli("create-token", "--role", "admin").stdout.strip()
    first = cli("revoke-token", "1")
    assert first.exit_code == 0 and "revoked" in first.stderr
    assert "already revoked" in cli("revoke-token", "1").stderr
    with pytest.raises(Exception, match="revoked"):
        verify(tmp_path, secret)
    missing = cli("revoke-token", "7")
    assert missing.exit_code == 1 and "no API token #7" in missing.stderr


def test_a_token_name_with_square_brackets_is_printed_as_written(cli) -> None:
    created = cli("create-token", "--role", "admin", "--name", "[/x] sync [red]app[/red]")
    assert created.exit_code == 0 and "'[/x] sync [red]app[/red]'" in created.stderr
    assert "[/x] sync [red]app[/red]" in cli("revoke-token", "1").stderr
