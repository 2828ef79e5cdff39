"""Which SMTP server and which preferences apply to a branch's emails, and how they are edited.

Resolution, most specific first:

1. the branch's :class:`EmailConfiguration` row,
2. the global row (``branch_id`` NULL),
3. the environment: Flask-Mail's names ``MAIL_SERVER``, ``MAIL_PORT``, ``MAIL_USE_TLS``,
   ``MAIL_USE_SSL``, ``MAIL_USERNAME``, ``MAIL_PASSWORD``, ``MAIL_DEFAULT_SENDER``, plus
   ``SCHOLARISE_ADMIN_EMAILS`` (comma-separated recipients).

Three things resolve separately, so a branch can override only what differs:

* **preferences** (enabled, notify on success / on failure, include details / error log) come
  from the most specific row that exists, else the environment defaults (all on);
* **the SMTP server** (host, port, security, user, password, From) comes from the most specific
  level whose host is set; with none anywhere, emails are written as ``.eml`` files into the
  instance outbox folder;
* **recipients** come from the most specific level that lists any.

An SSL/STARTTLS/port combination that cannot work is refused when it is configured, with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formataddr, parseaddr
from typing import TYPE_CHECKING, Any

from marshmallow import RAISE, Schema, ValidationError, fields, pre_load, validate
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from scholarise import crypto
from scholarise.errors import InputError, NotFoundError
from scholarise.mail_config import (
    DEFAULT_PORTS,
    FALLBACK_SENDER,
    MAX_RECIPIENTS,
    host_problem,
    is_address,
    security_problem,
    split_addresses,
    unique_addresses,
)
from scholarise.models import Branch, EmailConfiguration, Security
from scholarise.models.email import scope_for

if TYPE_CHECKING:
    from scholarise.config import Settings

__all__ = [
    "EmailConfigurationSchema",
    "EmailSettingsError",
    "Preferences",
    "SmtpTransport",
    "configuration_data",
    "default_sender",
    "delete_configuration",
    "describe",
    "get_configuration",
    "is_address",
    "resolve_preferences",
    "resolve_transport",
    "rotate_passwords",
    "save_configuration",
    "security_problem",
]


class EmailSettingsError(InputError):
    """Email settings that cannot be saved; ``errors`` maps each field to its messages."""

    def __init__(self, errors: Mapping[str, Any]) -> None:
        self.errors = {k: list(v) if isinstance(v, list | tuple) else [str(v)] for k, v in errors.items()}
        detail = "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in self.errors.items())
        super().__init__(f"The email settings were not saved: {detail}")

# --- resolution ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpTransport:
    """Where and how to deliver: one SMTP server with its From address. The password never shows in a repr."""

    host: str
    port: int
    security: str
    from_address: str
    from_name: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    has_password: bool = False
    source: str = "environment"

    @property
    def sender(self) -> str:
        """The From header: ``Name <address>`` (quoted and encoded as needed)."""
        return formataddr((self.from_name or "", self.from_address))

    def describe(self) -> str:
        """``host:port (STARTTLS, user u)``: for messages and logs; never the password."""
        mode = {"none": "no encryption", "starttls": "STARTTLS", "ssl": "SSL"}[self.security]
        return f"{self.host}:{self.port} ({mode}{', user ' + self.username if self.username else ''})"


@dataclass(frozen=True)
class Preferences:
    """What to send and to whom, with where each part came from (``branch``, ``global`` or ``environment``)."""

    enabled: bool = True
    notify_on_success: bool = True
    notify_on_failure: bool = True
    include_task_details: bool = True
    include_error_log: bool = True
    recipients: tuple[str, ...] = ()
    source: str = "environment"
    recipients_source: str = "environment"


def get_configuration(session: Session, branch_id: int | None) -> EmailConfiguration | None:
    """The stored row of one scope (a branch, or the global one when ``branch_id`` is None)."""
    return session.scalar(select(EmailConfiguration).where(EmailConfiguration.scope == scope_for(branch_id)))


def _levels(session: Session, branch_id: int | None) -> list[tuple[str, EmailConfiguration]]:
    scopes = [scope_for(branch_id), scope_for(None)] if branch_id is not None else [scope_for(None)]
    rows = {r.scope: r for r in session.scalars(select(EmailConfiguration).where(EmailConfiguration.scope.in_(scopes)))}
    return [("branch" if s != scope_for(None) else "global", rows[s]) for s in scopes if s in rows]


def resolve_preferences(session: Session, branch_id: int | None, *, settings: Settings) -> Preferences:
    """The preferences and recipients that apply to ``branch_id`` (see the module docstring for the order)."""
    levels = _levels(session, branch_id)
    recipients, recipients_source = tuple(settings.admin_emails), "environment"
    for source, row in levels:
        if row.recipients:
            recipients, recipients_source = tuple(row.recipients), source
            break
    if not levels:
        return Preferences(recipients=recipients, recipients_source=recipients_source)
    source, row = levels[0]
    return Preferences(enabled=row.enabled, notify_on_success=row.notify_on_success,
                       notify_on_failure=row.notify_on_failure, include_task_details=row.include_task_details,
                       include_error_log=row.include_error_log, recipients=recipients, source=source,
                       recipients_source=recipients_source)


def resolve_transport(session: Session, branch_id: int | None, *, settings: Settings,
                      decrypt: bool = True) -> SmtpTransport | None:
    """The SMTP server for ``branch_id``, or None when none is configured anywhere (the ``.eml`` outbox then).

    Args:
        decrypt: False to describe the server without touching the stored password.

    Raises:
        scholarise.crypto.DecryptionError: the stored password no longer opens with the configured keys.
    """
    for source, row in _levels(session, branch_id):
        if row.host:
            password = crypto.decrypt(row.password_encrypted, settings) if decrypt and row.password_encrypted else None
            return SmtpTransport(host=row.host, port=row.port or DEFAULT_PORTS[row.security], security=row.security,
                                 from_address=row.from_address or parseaddr(default_sender(settings))[1],
                                 from_name=row.from_name, username=row.username, password=password,
                                 has_password=row.has_password, source=source)
    if not settings.mail_server:
        return None
    security = Security.SSL if settings.mail_use_ssl else Security.STARTTLS if settings.mail_use_tls else Security.NONE
    name, address = parseaddr(default_sender(settings))
    return SmtpTransport(host=settings.mail_server, port=settings.mail_port or DEFAULT_PORTS[security],
                         security=security, from_address=address, from_name=name or None,
                         username=settings.mail_username, password=settings.mail_password if decrypt else None,
                         has_password=bool(settings.mail_password), source="environment")


def default_sender(settings: Settings) -> str:
    """``MAIL_DEFAULT_SENDER``, or a local placeholder for the embedded ``.eml`` outbox."""
    return settings.mail_default_sender or FALLBACK_SENDER


# --- editing: one schema for the admin page and the JSON API -------------------------------------

_DUMP_ONLY = ("id", "branch_id", "scope", "has_password", "created_at", "updated_at", "updated_by")
_OPTIONAL_TEXT = ("host", "username", "from_address", "from_name", "password")


def _no_line_breaks(value: str | None) -> None:
    if value and ("\n" in value or "\r" in value):
        raise ValidationError("Must be on one line.")


def _valid_host(value: str | None) -> None:
    if value and (problem := host_problem(value)):
        raise ValidationError(problem[0].upper() + problem[1:] + ".")


class EmailConfigurationSchema(Schema):
    """Create/update body of the email settings; dumps a row without its password (write-only).

    Input rules: ``password`` empty or absent keeps the stored one, ``clear_password: true`` removes
    it; ``recipients`` is a list or a comma/line-separated string; empty text means "not set". The
    rules that span fields (port vs. security, From address with a host) run in
    :func:`save_configuration` on the merged values, so a partial update cannot slip past them.
    """

    class Meta:
        unknown = RAISE

    id = fields.Integer(dump_only=True)
    branch_id = fields.Integer(dump_only=True, allow_none=True)
    scope = fields.String(dump_only=True)
    host = fields.String(allow_none=True, validate=[validate.Length(max=255), _valid_host])
    port = fields.Integer(allow_none=True, validate=validate.Range(1, 65535, error="Must be a port from 1 to 65535."))
    security = fields.String(validate=validate.OneOf(Security.ALL, error="Must be one of: none, starttls, ssl."))
    username = fields.String(allow_none=True, validate=[validate.Length(max=255), _no_line_breaks])
    password = fields.String(load_only=True, allow_none=True, validate=validate.Length(max=1000))
    clear_password = fields.Boolean(load_only=True)
    has_password = fields.Boolean(dump_only=True)
    from_address = fields.Email(allow_none=True, validate=validate.Length(max=254))
    from_name = fields.String(allow_none=True, validate=[validate.Length(max=120), _no_line_breaks])
    recipients = fields.List(fields.Email(), validate=validate.Length(
        max=MAX_RECIPIENTS, error=f"At most {MAX_RECIPIENTS} recipients."))
    notify_on_success = fields.Boolean()
    notify_on_failure = fields.Boolean()
    include_task_details = fields.Boolean()
    include_error_log = fields.Boolean()
    enabled = fields.Boolean()
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)
    updated_by = fields.String(dump_only=True)

    @pre_load
    def normalise(self, data: Any, **_: Any) -> Any:
        if not isinstance(data, Mapping):
            return data  # marshmallow reports "Invalid input type."
        data = {k: v for k, v in data.items() if k not in _DUMP_ONLY}
        for key in _OPTIONAL_TEXT:
            if isinstance(data.get(key), str):
                data[key] = data[key] if key == "password" else data[key].strip()
                if not data[key]:
                    data[key] = None
        if isinstance(data.get("security"), str):
            data["security"] = data["security"].strip().lower()
        if data.get("port") == "":
            data["port"] = None
        if isinstance(data.get("recipients"), str):
            data["recipients"] = split_addresses(data["recipients"])
        return data


def _merged_problems(values: dict[str, Any], *, has_password: bool) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if not values.get("host"):
        return errors
    port = values.get("port") or DEFAULT_PORTS[values["security"]]
    if problem := security_problem(values["security"], port):
        errors["port"] = [f"Port {port} with {values['security']} cannot work: {problem}."]
    if not values.get("from_address"):
        errors["from_address"] = ["A From address is required when an SMTP server is set."]
    if values.get("username") and not has_password:
        errors["password"] = ["Enter the password for this user name (or remove the user name)."]
    if has_password and not values.get("username"):
        errors["username"] = ["A password needs a user name."]
    return errors


def save_configuration(session: Session, branch_id: int | None, data: Mapping[str, Any], *, settings: Settings,
                       updated_by: str | None = None) -> EmailConfiguration:
    """Create or update the settings of a branch (or the global ones), validating everything first.

    Only the keys present in ``data`` change; an empty or absent password keeps the stored one.
    Nothing is written when any rule fails.

    Raises:
        NotFoundError: no branch with ``branch_id``.
        EmailSettingsError: invalid input; ``errors`` maps each field to its messages.
    """
    if branch_id is not None and session.get(Branch, branch_id) is None:
        raise NotFoundError(f"There is no branch with id {branch_id}.")
    try:
        loaded: dict[str, Any] = EmailConfigurationSchema().load(data, partial=True)
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        raise EmailSettingsError(messages) from None
    row = get_configuration(session, branch_id)
    editable = [k for k in EmailConfigurationSchema().fields if k not in _DUMP_ONLY
                and k not in ("password", "clear_password")]
    current = {k: getattr(row, k) if row is not None else None for k in editable}
    if row is None:
        current.update(security=Security.STARTTLS, recipients=[], notify_on_success=True, notify_on_failure=True,
                       include_task_details=True, include_error_log=True, enabled=True)
    values = {**current, **{k: v for k, v in loaded.items() if k in editable}}
    values["recipients"] = unique_addresses(list(values.get("recipients") or []))
    new_password = loaded.get("password")
    keeps_password = bool(row is not None and row.password_encrypted) and not loaded.get("clear_password")
    errors = _merged_problems(values, has_password=bool(new_password) or keeps_password)
    if errors:
        raise EmailSettingsError(errors)
    if values.get("host") and not values.get("port"):
        values["port"] = DEFAULT_PORTS[values["security"]]
    is_new = row is None
    if row is None:
        row = EmailConfiguration(scope=scope_for(branch_id), branch_id=branch_id)
    for key, value in values.items():
        setattr(row, key, value)
    if loaded.get("clear_password"):
        row.password_encrypted = None
    if new_password:
        row.password_encrypted = crypto.encrypt(new_password, settings)
    row.updated_by = updated_by
    if is_new:
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            raise InputError("These email settings were created by someone else at the same moment; "
                             "reload them and save again.") from None
    session.flush()
    return row


def delete_configuration(session: Session, branch_id: int | None) -> bool:
    """Remove a scope's settings (the branch then uses the global ones); False if there were none."""
    row = get_configuration(session, branch_id)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def configuration_data(row: EmailConfiguration | None) -> dict[str, Any] | None:
    """The JSON-ready stored settings (``has_password`` instead of the password), or None."""
    return None if row is None else EmailConfigurationSchema().dump(row)


def describe(session: Session, branch_id: int | None, *, settings: Settings) -> dict[str, Any]:
    """What is stored for the scope and what is in effect for its emails, with sources; never a password."""
    prefs = resolve_preferences(session, branch_id, settings=settings)
    transport = resolve_transport(session, branch_id, settings=settings, decrypt=False)
    smtp = None if transport is None else {
        "host": transport.host, "port": transport.port, "security": transport.security,
        "username": transport.username, "has_password": transport.has_password, "sender": transport.sender,
        "source": transport.source,
    }
    return {
        "branch_id": branch_id,
        "configuration": configuration_data(get_configuration(session, branch_id)),
        "effective": {
            "source": prefs.source, "enabled": prefs.enabled, "notify_on_success": prefs.notify_on_success,
            "notify_on_failure": prefs.notify_on_failure, "include_task_details": prefs.include_task_details,
            "include_error_log": prefs.include_error_log, "recipients": list(prefs.recipients),
            "recipients_source": prefs.recipients_source, "smtp": smtp,
            "delivery": "smtp" if smtp else f"files in {settings.outbox_dir}",
        },
    }


def rotate_passwords(session: Session, settings: Settings) -> int:
    """Re-encrypt every stored password under the current ``SCHOLARISE_SECRET_KEY``; returns how many.

    Raises:
        scholarise.crypto.DecryptionError: a password opens with neither the key nor a fallback.
    """
    box = crypto.box_for(settings)
    rows = list(session.scalars(select(EmailConfiguration).where(EmailConfiguration.password_encrypted.is_not(None))))
    for row in rows:
        row.password_encrypted = box.rotate(row.password_encrypted or "")
    session.flush()
    return len(rows)
