"""The one Flask-Mail adapter: delivers what :mod:`scholarise.notifications` rendered.

Flask-Mail 0.10 needs an application context (``Message`` and ``Connection.send`` read
``current_app``), so the mailer owns a minimal Flask app and wraps each send in
``with app.app_context()``. The SMTP settings are per message (a branch may have its own server),
so each send builds its own Flask-Mail state from the resolved :class:`SmtpTransport`; nothing
global is mutated, and worker threads can send at the same time.

Two things Flask-Mail does not do are added here: a timeout and a verified TLS context (its
``configure_host`` opens ``smtplib.SMTP(host, port)`` with neither), by opening the connection with
:func:`scholarise.smtp_check.connect`, which also turns every failure into a precise reason.

With no SMTP server configured anywhere, the embedded default writes each message as an ``.eml``
file into ``instance/outbox/`` and logs where.
"""

from __future__ import annotations

import logging
import os
import smtplib
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask
from flask_mail import Attachment, Connection, Mail, Message

from scholarise.config import Settings
from scholarise.email_settings import SmtpTransport
from scholarise.notifications import Delivery, Email
from scholarise.smtp_check import SmtpProblem, connect, explain, quit_quietly

logger = logging.getLogger(__name__)


class _Connection(Connection):
    """Flask-Mail's connection, opened by ``smtp_check.connect`` and recording partially refused recipients."""

    def __init__(self, mail: Any, transport: SmtpTransport, settings: Settings) -> None:
        super().__init__(mail)
        self.transport = transport
        self.settings = settings
        self.refused: dict[str, str] = {}

    def configure_host(self) -> smtplib.SMTP:
        smtp = connect(self.transport, timeout=self.settings.mail_timeout, ca_file=self.settings.mail_ca_file)
        sendmail = smtp.sendmail

        def recording_sendmail(*args: Any, **kwargs: Any) -> Any:
            refused = sendmail(*args, **kwargs)
            self.refused.update({addr: f"{code} {text.decode('utf-8', 'replace') if isinstance(text, bytes) else text}"
                                 for addr, (code, text) in (refused or {}).items()})
            return refused

        smtp.sendmail = recording_sendmail  # type: ignore[method-assign]
        return smtp

    def __exit__(self, *exc: Any) -> None:
        if self.host is not None:
            quit_quietly(self.host)  # never let a failing QUIT hide the real error (or a sent message)
            self.host = None


class FlaskMailMailer:
    """A :class:`scholarise.notifications.Mailer` over Flask-Mail; one per process, safe across threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = Flask("scholarise_mailer", root_path=str(settings.instance_path))
        self.app.config.update(MAIL_SUPPRESS_SEND=False, MAIL_ASCII_ATTACHMENTS=False, MAIL_DEFAULT_SENDER=None)
        self.mail = Mail(self.app)

    def __repr__(self) -> str:
        return "<FlaskMailMailer>"

    def send(self, email: Email, transport: SmtpTransport | None) -> Delivery:
        """Deliver ``email`` through ``transport``, or into the outbox folder when it is None.

        Raises:
            SmtpProblem: the server could not be reached or refused the message; the kind says why.
        """
        with self.app.app_context():
            message = self._message(email)
            if transport is None:
                return Delivery(via=self._write_eml(message, email))
            state = self.mail.init_mail(_flask_mail_config(transport))
            connection = _Connection(state, transport, self.settings)
            try:
                with connection:
                    message.send(connection)
            except SmtpProblem:
                raise
            except Exception as exc:  # noqa: BLE001 - classified, then raised again for the outbox to record
                raise explain(exc, transport, phase="send", timeout=self.settings.mail_timeout) from None
            return Delivery(via=f"smtp://{transport.host}:{transport.port}", refused=connection.refused)

    def _message(self, email: Email) -> Message:
        message = Message(subject=email.subject, recipients=list(email.recipients), body=email.text,
                          html=email.html, sender=email.sender,
                          attachments=[Attachment(a.filename, a.content_type, a.content.encode("utf-8"))
                                       for a in email.attachments])
        if email.message_id:
            message.msgId = email.message_id
        return message

    def _write_eml(self, message: Message, email: Email) -> str:
        folder = self.settings.outbox_dir
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{email.key}.eml"
        data = message.as_bytes()
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".eml")
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        Path(tmp).replace(path)
        logger.info("no SMTP server is configured: email %r saved to %s", email.subject, path)
        return str(path)


def _flask_mail_config(transport: SmtpTransport) -> dict[str, Any]:
    """Flask-Mail's own MAIL_* keys for one message."""
    return {
        "MAIL_SERVER": transport.host,
        "MAIL_PORT": transport.port,
        "MAIL_USE_TLS": transport.security == "starttls",
        "MAIL_USE_SSL": transport.security == "ssl",
        "MAIL_USERNAME": transport.username,
        "MAIL_PASSWORD": transport.password,
        "MAIL_DEFAULT_SENDER": transport.sender,
        "MAIL_SUPPRESS_SEND": False,
        "MAIL_ASCII_ATTACHMENTS": False,
    }
