"""Email settings: strict environment parsing, branch -> global -> environment resolution, safe editing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from scholarise import crypto
from scholarise.config import Settings
from scholarise.email_settings import (
    EmailConfigurationSchema,
    EmailSettingsError,
    configuration_data,
    delete_configuration,
    describe,
    get_configuration,
    resolve_preferences,
    resolve_transport,
    rotate_passwords,
    save_configuration,
)
from scholarise.errors import ConfigError, NotFoundError
from scholarise.models import EmailConfiguration
from scholarise.tasks import get_or_create_branch
from tests.support.migrated import migrated_copy

PASSWORD = "Sm7p-pa55word!"
SERVER = {"host": "smtp.example.org", "port": 587, "security": "starttls", "username": "mailer",
          "password": PASSWORD, "from_address": "noreply@example.org", "from_name": "Scholarise",
          "recipients": ["admin@example.org"]}

@pytest.fixture
def migrated(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The shared fixture's database, copied from a once-migrated template (fast)."""
    return migrated_copy(settings, tmp_path_factory)



def env_settings(**env: str) -> Settings:
    return Settings.from_env(env)


# --- the environment ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["False", "false", "0", "no", "off", ""])
def test_false_spellings_of_mail_booleans_are_false(raw: str) -> None:
    assert env_settings(MAIL_USE_TLS=raw).mail_use_tls is False


@pytest.mark.parametrize("raw", ["True", "1", "yes", "on"])
def test_true_spellings_of_mail_booleans_are_true(raw: str) -> None:
    assert env_settings(MAIL_USE_SSL=raw).mail_use_ssl is True


@pytest.mark.parametrize("name", ["MAIL_USE_TLS", "MAIL_USE_SSL"])
def test_an_unrecognised_boolean_is_an_error_naming_the_variable(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        env_settings(**{name: "sometimes"})


def test_tls_and_ssl_together_are_refused_with_the_reason() -> None:
    with pytest.raises(ConfigError, match="set only one"):
        env_settings(MAIL_USE_TLS="1", MAIL_USE_SSL="1")


@pytest.mark.parametrize(("flag", "port", "why"), [
    ("MAIL_USE_SSL", "587", "port 587 speaks plain SMTP first"),
    ("MAIL_USE_SSL", "25", "port 25 speaks plain SMTP first"),
    ("MAIL_USE_TLS", "465", "port 465 expects TLS from the first byte"),
])
def test_a_security_mode_on_the_other_modes_port_is_refused_with_the_reason(flag: str, port: str, why: str) -> None:
    with pytest.raises(ConfigError, match=f"MAIL_PORT={port}.*{why}"):
        env_settings(MAIL_SERVER="smtp.example.org", MAIL_DEFAULT_SENDER="a@example.org", MAIL_PORT=port,
                     **{flag: "true"})


def test_a_server_without_a_sender_is_refused() -> None:
    with pytest.raises(ConfigError, match="MAIL_DEFAULT_SENDER"):
        env_settings(MAIL_SERVER="smtp.example.org")


def test_a_user_name_without_a_password_is_refused() -> None:
    with pytest.raises(ConfigError, match="MAIL_PASSWORD"):
        env_settings(MAIL_SERVER="smtp.example.org", MAIL_DEFAULT_SENDER="a@example.org", MAIL_USERNAME="u")


def test_admin_emails_are_split_deduplicated_and_validated() -> None:
    settings = env_settings(SCHOLARISE_ADMIN_EMAILS="a@example.org, B@example.org,b@EXAMPLE.org;")
    assert settings.admin_emails == ("a@example.org", "B@example.org")
    with pytest.raises(ConfigError, match="SCHOLARISE_ADMIN_EMAILS: 'not-an-address'"):
        env_settings(SCHOLARISE_ADMIN_EMAILS="a@example.org, not-an-address")


def test_the_environment_server_is_the_last_fallback(session: Session, settings: Settings) -> None:
    env = settings.replace(mail_server="mail.example.org", mail_use_ssl=True, mail_username="u",
                           mail_password=PASSWORD, mail_default_sender="Ops <ops@example.org>",
                           admin_emails=("ops@example.org",))
    transport = resolve_transport(session, None, settings=env)
    assert transport is not None
    assert (transport.host, transport.port, transport.security, transport.source) == (
        "mail.example.org", 465, "ssl", "environment")
    assert transport.sender == "Ops <ops@example.org>" and transport.password == PASSWORD
    assert PASSWORD not in repr(transport)
    assert resolve_preferences(session, None, settings=env).recipients == ("ops@example.org",)


def test_with_nothing_configured_there_is_no_smtp_server(session: Session, settings: Settings) -> None:
    assert resolve_transport(session, None, settings=settings) is None
    assert describe(session, None, settings=settings)["effective"]["delivery"].startswith("files in ")


# --- resolution ---------------------------------------------------------------------------------


def test_branch_settings_override_global_ones(session: Session, settings: Settings) -> None:
    branch = get_or_create_branch(session, "North")
    save_configuration(session, None, SERVER, settings=settings)
    save_configuration(session, branch.id, {**SERVER, "host": "smtp.north.example.org", "port": 2525,
                                            "recipients": ["north@example.org"], "notify_on_success": False},
                       settings=settings)
    transport = resolve_transport(session, branch.id, settings=settings)
    prefs = resolve_preferences(session, branch.id, settings=settings)
    assert transport is not None and (transport.host, transport.port, transport.source) == (
        "smtp.north.example.org", 2525, "branch")
    assert (prefs.recipients, prefs.notify_on_success, prefs.source) == (("north@example.org",), False, "branch")
    other = get_or_create_branch(session, "South")
    assert resolve_transport(session, other.id, settings=settings).host == "smtp.example.org"  # type: ignore[union-attr]
    assert resolve_preferences(session, other.id, settings=settings).source == "global"


def test_a_branch_without_a_server_or_recipients_inherits_them(session: Session, settings: Settings) -> None:
    branch = get_or_create_branch(session, "North")
    save_configuration(session, None, SERVER, settings=settings)
    save_configuration(session, branch.id, {"include_error_log": False}, settings=settings)
    transport = resolve_transport(session, branch.id, settings=settings)
    prefs = resolve_preferences(session, branch.id, settings=settings)
    assert transport is not None and transport.source == "global" and transport.password == PASSWORD
    assert prefs.recipients == ("admin@example.org",) and prefs.recipients_source == "global"
    assert prefs.include_error_log is False and prefs.source == "branch"


# --- editing ------------------------------------------------------------------------------------


def test_the_password_is_stored_encrypted_and_never_returned(session: Session, settings: Settings) -> None:
    row = save_configuration(session, None, SERVER, settings=settings)
    raw = session.execute(text("SELECT password_encrypted FROM email_configurations")).scalar_one()
    assert raw and PASSWORD not in raw
    assert crypto.decrypt(raw, settings) == PASSWORD
    dumped = configuration_data(row)
    assert dumped is not None and "password" not in dumped and dumped["has_password"] is True
    assert PASSWORD not in str(describe(session, None, settings=settings))
    assert PASSWORD not in repr(row) and raw not in repr(row)


def test_an_empty_password_keeps_the_stored_one_and_clear_password_removes_it(session: Session,
                                                                              settings: Settings) -> None:
    save_configuration(session, None, SERVER, settings=settings)
    before = get_configuration(session, None).password_encrypted  # type: ignore[union-attr]
    save_configuration(session, None, {"password": "", "from_name": "Ops"}, settings=settings)
    row = get_configuration(session, None)
    assert row is not None and row.password_encrypted == before and row.from_name == "Ops"
    save_configuration(session, None, {"clear_password": True, "username": ""}, settings=settings)
    assert row.password_encrypted is None and row.username is None


def test_a_partial_update_cannot_create_an_impossible_combination(session: Session, settings: Settings) -> None:
    save_configuration(session, None, SERVER, settings=settings)
    with pytest.raises(EmailSettingsError) as caught:
        save_configuration(session, None, {"port": 465}, settings=settings)
    assert "465 expects TLS from the first byte" in caught.value.errors["port"][0]
    assert get_configuration(session, None).port == 587  # type: ignore[union-attr]


@pytest.mark.parametrize(("data", "field", "fragment"), [
    ({"host": "smtp://smtp.example.org"}, "host", "without a scheme"),
    ({"host": "smtp.example.org:587"}, "host", "port field"),
    ({"port": 70000}, "port", "1 to 65535"),
    ({"security": "tls"}, "security", "none, starttls, ssl"),
    ({"recipients": "a@example.org, nope"}, "recipients", "valid email"),
    ({"enabled": "maybe"}, "enabled", "boolean"),
    ({"from_name": "Evil\r\nBcc: x@example.org"}, "from_name", "one line"),
    ({"passwrd": "x"}, "passwrd", "Unknown field"),
])
def test_bad_input_is_refused_per_field_and_nothing_is_stored(session: Session, settings: Settings, data: dict,
                                                              field: str, fragment: str) -> None:
    with pytest.raises(EmailSettingsError) as caught:
        save_configuration(session, None, {**SERVER, **data}, settings=settings)
    assert fragment in " ".join(map(str, caught.value.errors[field]))
    assert session.scalar(select(func.count()).select_from(EmailConfiguration)) == 0


def test_a_server_needs_a_from_address_and_a_user_needs_a_password(session: Session, settings: Settings) -> None:
    with pytest.raises(EmailSettingsError) as caught:
        save_configuration(session, None, {"host": "smtp.example.org", "username": "u"}, settings=settings)
    assert set(caught.value.errors) == {"from_address", "password"}


def test_recipients_may_be_a_separated_string_and_are_deduplicated(session: Session, settings: Settings) -> None:
    row = save_configuration(session, None, {"recipients": "a@example.org;\nB@example.org, b@example.org"},
                             settings=settings)
    assert row.recipients == ["a@example.org", "B@example.org"]


def test_the_port_defaults_from_the_security_mode(session: Session, settings: Settings) -> None:
    row = save_configuration(session, None, {**SERVER, "port": None, "security": "ssl"}, settings=settings)
    assert row.port == 465


def test_a_dumped_configuration_can_be_loaded_back(session: Session, settings: Settings) -> None:
    row = save_configuration(session, None, SERVER, settings=settings)
    dumped = configuration_data(row)
    assert dumped is not None
    save_configuration(session, None, dumped, settings=settings)  # id, has_password, timestamps are ignored
    assert EmailConfigurationSchema().load(dumped, partial=True)["host"] == "smtp.example.org"


def test_settings_for_a_missing_branch_are_refused(session: Session, settings: Settings) -> None:
    with pytest.raises(NotFoundError):
        save_configuration(session, 999, SERVER, settings=settings)


def test_there_is_one_configuration_per_scope(session: Session, settings: Settings) -> None:
    save_configuration(session, None, SERVER, settings=settings)
    save_configuration(session, None, {"from_name": "Again"}, settings=settings)
    assert session.scalar(select(func.count()).select_from(EmailConfiguration)) == 1
    assert delete_configuration(session, None) is True
    assert delete_configuration(session, None) is False


def test_rotating_the_key_re_encrypts_every_stored_password(session: Session, settings: Settings) -> None:
    branch = get_or_create_branch(session, "North")
    save_configuration(session, None, SERVER, settings=settings)
    save_configuration(session, branch.id, {**SERVER, "password": "other-pass"}, settings=settings)
    new = settings.replace(secret_key="a-brand-new-secret-key-123456", secret_key_fallbacks=(settings.secret_key,))
    assert rotate_passwords(session, new) == 2
    only_new = new.replace(secret_key_fallbacks=())
    assert resolve_transport(session, branch.id, settings=only_new).password == "other-pass"  # type: ignore[union-attr]
    assert resolve_transport(session, None, settings=only_new).password == PASSWORD  # type: ignore[union-attr]
