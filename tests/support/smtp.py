"""A real SMTP server on loopback for the email tests (aiosmtpd): plain, STARTTLS or implicit SSL, with AUTH.

Usage::

    cert = make_certificate(tmp_path)
    with SmtpServer(mode="starttls", certificate=cert, username="mailer", password="s3cret") as server:
        ...  # server.port, server.messages
        server.stop()   # the server is down: connections are refused
        server.start()  # up again on the same port

The certificate is self-signed for ``localhost`` and ``127.0.0.1`` and made by the test with
``cryptography``; trust it through ``Settings(mail_ca_file=cert.cert_path)``.
"""

from __future__ import annotations

import email
import email.policy
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certificate:
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert_path), str(self.key_path))
        return context


def make_certificate(folder: Path, common_name: str = "localhost") -> Certificate:
    """A self-signed certificate (its own CA) for ``localhost`` and ``127.0.0.1``, valid for a day."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Certificate(cert_path, key_path)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Received:
    """One accepted message: the envelope and the parsed MIME message."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    authenticated_as: str | None = None
    message: EmailMessage = field(init=False)

    def __post_init__(self) -> None:
        self.message = email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[assignment]

    def part(self, content_type: str) -> str:
        """The decoded text of the first part of ``content_type`` (e.g. ``text/html``)."""
        for part in self.message.walk():
            if part.get_content_type() == content_type and not part.is_multipart():
                return str(part.get_content())
        raise KeyError(content_type)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_RCPT(self, smtp: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.lower() in self.server.refuse:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        user = session.auth_data if isinstance(session.auth_data, str) else None
        received = Received(envelope.mail_from, list(envelope.rcpt_tos),
                            envelope.original_content or envelope.content, user)
        with self.server.lock:
            self.server.messages.append(received)
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd in a thread on 127.0.0.1; ``mode`` is ``plain``, ``starttls`` or ``ssl``."""

    def __init__(self, *, mode: str = "plain", certificate: Certificate | None = None, username: str | None = None,
                 password: str | None = None, refuse: tuple[str, ...] = (), port: int | None = None) -> None:
        if mode not in ("plain", "starttls", "ssl"):
            raise ValueError(mode)
        if mode != "plain" and certificate is None:
            raise ValueError("STARTTLS and SSL need a certificate")
        self.mode, self.certificate = mode, certificate
        self.username, self.password = username, password
        self.refuse = {r.lower() for r in refuse}
        self.port = port or free_port()
        self.messages: list[Received] = []
        self.logins: list[tuple[str, bool]] = []
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    def _authenticate(self, smtp: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = (isinstance(data, LoginPassword) and data.login.decode() == self.username
              and data.password.decode() == self.password)
        with self.lock:
            self.logins.append((mechanism, ok))
        return AuthResult(success=ok, handled=False, auth_data=self.username if ok else None)

    def start(self) -> SmtpServer:
        kwargs: dict[str, Any] = {"server_hostname": "localhost", "ready_timeout": 10}
        if self.username:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=self.mode == "starttls")
        if self.mode == "starttls":
            assert self.certificate is not None
            kwargs.update(tls_context=self.certificate.server_context(), require_starttls=True)
        elif self.mode == "ssl":
            assert self.certificate is not None
            kwargs.update(ssl_context=self.certificate.server_context())
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused until :meth:`start`."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} messages, got {len(self.messages)}")

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class SilentServer:
    """Accepts TCP connections and never says a word (an implicit-TLS port seen by a plain client, or a hung server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.sock.close()


class BlackHole:
    """A port whose accept queue is full, so a new connection attempt times out (no loopback firewall needed)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = int(self.sock.getsockname()[1])
        self.fillers: list[socket.socket] = []
        for _ in range(3):  # fill the backlog (Linux keeps backlog + 1 completed connections)
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(filler)
        time.sleep(0.1)

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: Any) -> None:
        for filler in self.fillers:
            filler.close()
        self.sock.close()
