"""Settings: defaults for the embedded mode, and bad values that stop the start naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from scholarise.config import Settings
from scholarise.errors import ConfigError


def test_defaults_need_nothing_installed(tmp_path: Path):
    settings = Settings.from_env({"SCHOLARISE_INSTANCE_PATH": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'scholarise.db'}"
    assert (settings.broker, settings.provider_name, settings.effective_rate_limit) == ("embedded", "local", 0)


def test_redis_and_clerk_are_selected_by_their_variables():
    settings = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/0", "CLERK_SECRET_KEY": "sk_live_abc",
                                  "DATABASE_URL": "postgres://u:p@db/x"})
    assert (settings.broker, settings.provider_name) == ("redis", "clerk")
    assert settings.effective_rate_limit == 1000
    assert settings.database_url == "postgresql://u:p@db/x"
    assert Settings.from_env({"CLERK_SECRET_KEY": "sk_test_abc"}).effective_rate_limit == 100


def test_secrets_never_show_in_the_repr():
    settings = Settings.from_env({"CLERK_SECRET_KEY": "sk_test_verysecret", "SCHOLARISE_SECRET_KEY": "x" * 20})
    assert "verysecret" not in repr(settings) and "x" * 20 not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SCHOLARISE_BATCH_SIZE": "ten"}, "SCHOLARISE_BATCH_SIZE must be a whole number"),
        ({"SCHOLARISE_BATCH_SIZE": "0"}, "SCHOLARISE_BATCH_SIZE must be between 1 and 500"),
        ({"SCHOLARISE_PROVIDER_RATE_WINDOW": "soon"}, "SCHOLARISE_PROVIDER_RATE_WINDOW must be a number"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must start with one of"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must start with one of"),
        ({"CLERK_SECRET_KEY": "pk_test_x"}, "CLERK_SECRET_KEY must start with sk_test_ or sk_live_"),
        ({"SCHOLARISE_SECRET_KEY": "short"}, "SCHOLARISE_SECRET_KEY must be at least 16 characters"),
        ({"SCHOLARISE_DEBUG": "maybe"}, "SCHOLARISE_DEBUG must be true or false"),
        ({"SCHOLARISE_BROKER": "redis"}, "SCHOLARISE_BROKER=redis needs REDIS_URL"),
    ],
)
def test_bad_values_fail_with_a_message_naming_the_variable(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_a_dotenv_file_fills_in_what_the_environment_does_not_set(tmp_path: Path, monkeypatch):
    dotenv = tmp_path / ".env"
    dotenv.write_text("SCHOLARISE_BATCH_SIZE=25\nSCHOLARISE_WORKER_THREADS=3\n")
    monkeypatch.setenv("SCHOLARISE_WORKER_THREADS", "7")
    settings = Settings.from_env(dotenv=dotenv)
    assert (settings.batch_size, settings.worker_threads) == (25, 7)
