"""Talking to an SMTP server with reasons a person can act on: connect, negotiate TLS, log in, send.

Every failure becomes an :class:`SmtpProblem` whose ``kind`` says what went wrong and whose
message says what to change. The kinds are:

``refused``            nothing listens on the port (or a firewall rejects the connection)
``timeout``            no answer at all within the timeout
``dns``                the host name does not resolve
``network``            any other network error reaching the host
``tls_mismatch``       the security mode does not match the port: SSL on a plain/STARTTLS port,
                       STARTTLS or no encryption on an implicit-TLS port, or no STARTTLS offered
``certificate``        the server's TLS certificate is not trusted (self-signed, expired, wrong name)
``tls``                another TLS failure
``auth``               the user name or password was rejected, or the server offers no login
``sender_refused``     the From address was refused
``recipient_refused``  every recipient was refused (``permanent`` when the codes are 5xx)
``message_refused``    the message itself was refused
``disconnected`` / ``protocol``  the server hung up or answered something unexpected
``not_configured``     no SMTP server is configured at any level
``config``             the stored password cannot be decrypted (the secret key changed)

Certificates are verified (Python's default trust store, plus ``SCHOLARISE_MAIL_CA_FILE`` for a
private CA), because an unverified TLS connection would hand the SMTP password to anyone in the path.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from scholarise.crypto import DecryptionError
from scholarise.email_settings import SmtpTransport, resolve_preferences, resolve_transport
from scholarise.errors import InputError, ScholariseError
from scholarise.mail_config import is_address, not_addresses, split_addresses
from scholarise.models import Branch, Security
from scholarise.notifications import render_test_email, to_mime

if TYPE_CHECKING:
    from scholarise.config import Settings


class SmtpProblem(ScholariseError):
    """A delivery or connection failure with its ``kind``; ``permanent`` ones are not worth retrying."""

    def __init__(self, kind: str, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.permanent = permanent


@dataclass(frozen=True)
class CheckResult:
    """The answer of a connection check or test email, ready for a page, the API or the CLI."""

    ok: bool
    kind: str
    message: str
    server: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "kind": self.kind, "message": self.message, "server": self.server,
                "source": self.source}


def tls_context(ca_file: Path | None = None) -> ssl.SSLContext:
    """A verifying client context: the system CAs, plus ``ca_file`` when a private CA signs the server."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


class _Smtp(smtplib.SMTP):
    phase = "connect"

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout, self.source_address)
        self.phase = "greeting"
        return sock


class _SmtpSsl(smtplib.SMTP_SSL):
    phase = "connect"

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout, self.source_address)
        self.phase = "handshake"
        sock = self.context.wrap_socket(sock, server_hostname=self._host)  # type: ignore[attr-defined]
        self.phase = "greeting"
        return sock


def connect(transport: SmtpTransport, *, timeout: float, ca_file: Path | None = None) -> smtplib.SMTP:
    """An open, TLS-negotiated (as configured) and logged-in SMTP connection; the caller quits it.

    Raises:
        SmtpProblem: with the kind and a message saying what to change.
    """
    context = tls_context(ca_file)
    smtp: Any = (_SmtpSsl(timeout=timeout, context=context) if transport.security == Security.SSL
                 else _Smtp(timeout=timeout))
    smtp._host = transport.host  # smtplib takes the TLS server name from here; only its constructor sets it
    try:
        smtp.connect(transport.host, transport.port)
        smtp.phase = "ehlo"
        smtp.ehlo()
        if transport.security == Security.STARTTLS:
            if not smtp.has_extn("starttls"):
                raise SmtpProblem("tls_mismatch", f"{_where(transport)} does not offer STARTTLS. If this is an "
                                  "implicit-TLS port (usually 465) choose SSL; choose no encryption only on a "
                                  "trusted network.")
            smtp.phase = "starttls"
            smtp.starttls(context=context)
            smtp.ehlo()
        if transport.username:
            smtp.phase = "auth"
            if not smtp.has_extn("auth"):
                hint = " on an unencrypted connection; choose STARTTLS or SSL" if transport.security == "none" else ""
                raise SmtpProblem("auth", f"{_where(transport)} does not offer login (AUTH){hint}.")
            smtp.login(transport.username, transport.password or "")
        smtp.phase = "send"
        return smtp  # type: ignore[no-any-return]
    except BaseException as exc:
        _close(smtp)
        if isinstance(exc, SmtpProblem):
            raise
        if not isinstance(exc, Exception):
            raise
        raise explain(exc, transport, phase=smtp.phase, timeout=timeout) from None


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.close()
    except OSError:
        pass


def quit_quietly(smtp: smtplib.SMTP) -> None:
    """QUIT, ignoring a server that already hung up (the message is sent; this only says goodbye)."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        _close(smtp)


def _where(transport: SmtpTransport) -> str:
    return f"{transport.host}:{transport.port}"


def _reply(code: int | None, text: bytes | str | None) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = " ".join((text or "").split())[:200]
    return f"{code} {text}".strip() if code else text


def explain(exc: Exception, transport: SmtpTransport, *, phase: str = "send", timeout: float = 0) -> SmtpProblem:
    """The :class:`SmtpProblem` for an exception raised while talking to ``transport`` during ``phase``."""
    where, wait = _where(transport), f"{timeout:g} s" if timeout else "the timeout"
    if isinstance(exc, SmtpProblem):
        return exc
    if isinstance(exc, socket.gaierror):
        return SmtpProblem("dns", f"The host name {transport.host!r} could not be resolved; check its spelling.")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SmtpProblem("certificate", f"The TLS certificate of {transport.host} was not accepted "
                           f"({exc.verify_message or exc.reason}). Use the name the certificate was issued for, "
                           "or trust its CA with SCHOLARISE_MAIL_CA_FILE.")
    if phase == "connect":
        if isinstance(exc, ConnectionRefusedError):
            return SmtpProblem("refused", f"{where} refused the connection: no mail server is listening on that "
                               "port (wrong port, or the server is down), or a firewall rejects it.")
        if isinstance(exc, TimeoutError):
            return SmtpProblem("timeout", f"No answer from {where} within {wait}: the host is unreachable or a "
                               "firewall silently drops the connection.")
        if isinstance(exc, OSError):
            return SmtpProblem("network", f"Could not reach {where}: {exc.strerror or exc}.")
    if phase == "handshake":
        if isinstance(exc, TimeoutError):
            return SmtpProblem("timeout", f"{where} accepted the connection but did not answer the TLS handshake "
                               f"within {wait}.")
        return SmtpProblem("tls_mismatch", f"{where} did not start TLS: it speaks plain SMTP on this port, so SSL "
                           "(implicit TLS) cannot work here. Choose STARTTLS (usually port 587), or use the "
                           "server's SSL port (usually 465).")
    if phase == "greeting" and isinstance(exc, smtplib.SMTPServerDisconnected | TimeoutError | ConnectionError):
        if transport.security != Security.SSL:
            return SmtpProblem("tls_mismatch", f"{where} accepted the connection but sent no SMTP greeting within "
                               f"{wait}. The port most likely expects TLS from the first byte: choose SSL (usually "
                               "port 465), or STARTTLS on port 587.")
        return SmtpProblem("timeout", f"{where} negotiated TLS but sent no SMTP greeting within {wait}.")
    if isinstance(exc, smtplib.SMTPConnectError):
        return SmtpProblem("protocol", f"{where} refused the SMTP session: {_reply(exc.smtp_code, exc.smtp_error)}.")
    if phase == "starttls" and isinstance(exc, ssl.SSLError):
        return SmtpProblem("tls", f"The TLS negotiation with {where} after STARTTLS failed: {exc.reason or exc}.")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return SmtpProblem("auth", f"{where} rejected the user name or password "
                           f"({_reply(exc.smtp_code, exc.smtp_error)}).")
    if phase == "auth":
        return SmtpProblem("auth", f"Could not log in to {where}: {exc}.")
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return SmtpProblem("sender_refused", f"{where} refused the From address {exc.sender}: "
                           f"{_reply(exc.smtp_code, exc.smtp_error)}. Use an address this account may send as.")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = exc.recipients
        detail = "; ".join(f"{addr} ({_reply(code, text)})" for addr, (code, text) in refused.items())
        permanent = bool(refused) and all(code >= 500 for code, _ in refused.values())
        return SmtpProblem("recipient_refused", f"{where} refused the recipient(s): {detail}.", permanent=permanent)
    if isinstance(exc, smtplib.SMTPDataError):
        return SmtpProblem("message_refused", f"{where} refused the message: {_reply(exc.smtp_code, exc.smtp_error)}.")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return SmtpProblem("disconnected", f"{where} closed the connection unexpectedly ({phase}).")
    if isinstance(exc, TimeoutError):
        return SmtpProblem("timeout", f"{where} stopped answering for {wait} ({phase}).")
    if isinstance(exc, ssl.SSLError):
        return SmtpProblem("tls", f"TLS failed with {where}: {exc.reason or exc}.")
    if isinstance(exc, smtplib.SMTPException):
        return SmtpProblem("protocol", f"{where} answered unexpectedly ({phase}): {exc}.")
    if isinstance(exc, OSError):
        return SmtpProblem("network", f"The connection to {where} failed ({phase}): {exc.strerror or exc}.")
    return SmtpProblem("protocol", f"Sending through {where} failed ({phase}): {type(exc).__name__}.")


def check_transport(transport: SmtpTransport, *, timeout: float, ca_file: Path | None = None) -> CheckResult:
    """Connect, negotiate TLS as configured, log in and say goodbye; the result says what failed."""
    try:
        smtp = connect(transport, timeout=timeout, ca_file=ca_file)
    except SmtpProblem as problem:
        return CheckResult(False, problem.kind, str(problem), transport.describe(), transport.source)
    smtp.noop()
    quit_quietly(smtp)
    login = " and logged in" if transport.username else ""
    return CheckResult(True, "ok", f"Connected to {transport.describe()}{login}.", transport.describe(),
                       transport.source)


def _transport_or_result(session: Session, branch_id: int | None, settings: Settings
                         ) -> SmtpTransport | CheckResult:
    if branch_id is not None and session.get(Branch, branch_id) is None:
        raise InputError(f"There is no branch with id {branch_id}.")
    try:
        transport = resolve_transport(session, branch_id, settings=settings)
    except DecryptionError as exc:
        return CheckResult(False, "config", str(exc))
    if transport is None:
        return CheckResult(False, "not_configured", "No SMTP server is configured for this branch, globally or in "
                           f"the environment (MAIL_SERVER); emails are saved as .eml files in {settings.outbox_dir}.")
    return transport


def test_connection(session: Session, *, branch_id: int | None, settings: Settings) -> CheckResult:
    """Check the SMTP server that applies to ``branch_id`` (None: the global one).

    Raises:
        InputError: no branch with ``branch_id``.
    """
    found = _transport_or_result(session, branch_id, settings)
    if isinstance(found, CheckResult):
        return found
    return check_transport(found, timeout=settings.mail_timeout, ca_file=settings.mail_ca_file)


def send_test_email(session: Session, *, branch_id: int | None, settings: Settings,
                    to: str | list[str] | None = None) -> CheckResult:
    """Send the test message now, through the server that applies to ``branch_id``, to ``to`` or the recipients.

    Raises:
        InputError: no such branch, an invalid address, or nobody to send to.
    """
    recipients = split_addresses(to) if isinstance(to, str) else list(to or [])
    if not recipients:
        recipients = list(resolve_preferences(session, branch_id, settings=settings).recipients)
    if not recipients:
        raise InputError("Nobody to send the test email to: give an address, or configure admin recipients.")
    bad = [r for r in recipients if not is_address(r)]
    if bad:
        raise InputError(f"{not_addresses(bad)}.")
    found = _transport_or_result(session, branch_id, settings)
    if isinstance(found, CheckResult):
        return found
    branch = session.get(Branch, branch_id) if branch_id is not None else None
    email = render_test_email(recipients, found, settings=settings, branch=branch.name if branch else None)
    try:
        smtp = connect(found, timeout=settings.mail_timeout, ca_file=settings.mail_ca_file)
    except SmtpProblem as problem:
        return CheckResult(False, problem.kind, str(problem), found.describe(), found.source)
    try:
        refused = smtp.send_message(to_mime(email), found.from_address, recipients)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a reason for the person testing
        problem = explain(exc, found, phase="send", timeout=settings.mail_timeout)
        return CheckResult(False, problem.kind, str(problem), found.describe(), found.source)
    finally:
        quit_quietly(smtp)
    if refused:
        detail = "; ".join(f"{a} ({_reply(c, t)})" for a, (c, t) in refused.items())
        return CheckResult(False, "recipient_refused", f"Sent, but {_where(found)} refused some recipients: {detail}.",
                           found.describe(), found.source)
    return CheckResult(True, "ok", f"Test email sent to {', '.join(recipients)} through {found.describe()}.",
                       found.describe(), found.source)
