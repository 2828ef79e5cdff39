"""Rules every mail setting obeys, and the environment defaults (Flask-Mail's own variable names).

Shared by ``Settings.from_env`` (environment), the email settings schema (admin page and JSON API)
and the connection check, so a combination refused in one place is refused everywhere with the
same reason. Booleans are strict: ``true/1/yes/on`` and ``false/0/no/off``; anything else is an
error naming the variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.utils import formataddr, parseaddr
from pathlib import Path
from typing import Any

from scholarise.errors import ConfigError
from scholarise.models.email import Security

DEFAULT_PORTS = {Security.NONE: 25, Security.STARTTLS: 587, Security.SSL: 465}
FALLBACK_SENDER = "Scholarise <scholarise@localhost>"
MAX_RECIPIENTS = 50
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]+$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$|^\[?[0-9A-Fa-f:.]+\]?$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def security_problem(security: str, port: int) -> str | None:
    """Why ``security`` cannot work on ``port`` (a well-known port of the other mode), or None."""
    if security == Security.SSL and port in (25, 587):
        return (f"port {port} speaks plain SMTP first (STARTTLS), so an SSL (implicit TLS) client would fail the "
                "TLS handshake; use STARTTLS on this port, or SSL on port 465")
    if security == Security.STARTTLS and port == 465:
        return ("port 465 expects TLS from the first byte (SSL), so a STARTTLS client would wait for a greeting "
                "that never comes; use SSL on port 465, or STARTTLS on port 587")
    if security == Security.NONE and port == 465:
        return "port 465 expects TLS from the first byte (SSL); use SSL on port 465"
    return None


def is_address(value: str) -> bool:
    """A plain address (``name@example.org``): no display name, no spaces, a dot in the domain."""
    return bool(_ADDRESS.match(value or ""))


def split_addresses(raw: str) -> list[str]:
    """Addresses from a comma-, semicolon- or line-separated string, trimmed, empty entries dropped."""
    return [part.strip() for part in re.split(r"[,;\s]+", raw or "") if part.strip()]


def unique_addresses(addresses: list[str]) -> list[str]:
    """The addresses without case-insensitive duplicates, first spelling kept."""
    seen: set[str] = set()
    kept = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            kept.append(address)
    return kept


def host_problem(host: str) -> str | None:
    """Why ``host`` is not a usable SMTP host name (a URL, a host:port, junk), or None."""
    if "://" in host:
        return "enter only the host name, e.g. smtp.example.org, without a scheme"
    if ":" in host and not host.startswith("["):
        if host.count(":") == 1:
            return "enter the port in the port field, not after the host name"
    if not _HOST.match(host) or len(host) > 255:
        return f"{host!r} is not a valid host name"
    return None


# --- the environment -----------------------------------------------------------------------------


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip()
    if not raw:
        return False
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false (1/0, yes/no, on/off; got {raw!r}).")


def _number(env: Mapping[str, str], name: str, kind: type, low: float, high: float) -> Any:
    raw = env.get(name, "").strip()
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a {'whole ' if kind is int else ''}number (got {raw!r}).") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g} (got {value:g}).")
    return value


def mail_settings_from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """The email fields of :class:`Settings` from environment variables (called by ``Settings.from_env``).

    Raises:
        ConfigError: a value is malformed or the combination cannot work; the message names the variable.
    """
    kw: dict[str, Any] = {"mail_use_tls": _bool(env, "MAIL_USE_TLS"), "mail_use_ssl": _bool(env, "MAIL_USE_SSL")}
    if kw["mail_use_tls"] and kw["mail_use_ssl"]:
        raise ConfigError("MAIL_USE_TLS and MAIL_USE_SSL are both true, but a connection is either TLS from the "
                          "start (MAIL_USE_SSL, port 465) or upgraded with STARTTLS (MAIL_USE_TLS, port 587): "
                          "set only one.")
    server = env.get("MAIL_SERVER", "").strip()
    if server:
        if problem := host_problem(server):
            raise ConfigError(f"MAIL_SERVER: {problem}.")
        kw["mail_server"] = server
    security = Security.SSL if kw["mail_use_ssl"] else Security.STARTTLS if kw["mail_use_tls"] else Security.NONE
    if env.get("MAIL_PORT", "").strip():
        kw["mail_port"] = _number(env, "MAIL_PORT", int, 1, 65535)
        if problem := security_problem(security, kw["mail_port"]):
            flag = {"ssl": "MAIL_USE_SSL=true", "starttls": "MAIL_USE_TLS=true"}.get(security, "no encryption")
            raise ConfigError(f"MAIL_PORT={kw['mail_port']} with {flag} cannot work: {problem}.")
    user, password = env.get("MAIL_USERNAME", "").strip(), env.get("MAIL_PASSWORD", "")
    if bool(user) != bool(password):
        missing = "MAIL_PASSWORD" if user else "MAIL_USERNAME"
        raise ConfigError(f"{missing} is not set: MAIL_USERNAME and MAIL_PASSWORD go together.")
    kw["mail_username"], kw["mail_password"] = user or None, password or None
    sender = env.get("MAIL_DEFAULT_SENDER", "").strip()
    if sender:
        name, address = parseaddr(sender)
        if not is_address(address) or "\n" in sender or "\r" in sender:
            raise ConfigError("MAIL_DEFAULT_SENDER must be an address, optionally with a name: "
                              "'Scholarise <noreply@example.org>'.")
        kw["mail_default_sender"] = formataddr((name, address)) if name else address
    elif server:
        raise ConfigError("MAIL_SERVER is set but MAIL_DEFAULT_SENDER is not: set the From address of the emails.")
    admins = split_addresses(env.get("SCHOLARISE_ADMIN_EMAILS", ""))
    bad = [a for a in admins if not is_address(a)]
    if bad:
        raise ConfigError(f"SCHOLARISE_ADMIN_EMAILS: {not_addresses(bad)} (separate addresses with commas).")
    kw["admin_emails"] = tuple(unique_addresses(admins))
    numbers = {
        "SCHOLARISE_MAIL_TIMEOUT": ("mail_timeout", float, 0.5, 300.0),
        "SCHOLARISE_MAIL_MAX_ATTEMPTS": ("mail_max_attempts", int, 1, 50),
        "SCHOLARISE_MAIL_RETRY_MIN_BACKOFF": ("mail_retry_min_backoff", float, 0.1, 86_400.0),
        "SCHOLARISE_MAIL_RETRY_MAX_BACKOFF": ("mail_retry_max_backoff", float, 0.1, 7 * 86_400.0),
    }
    for name, (attr, kind, low, high) in numbers.items():
        if env.get(name, "").strip():
            kw[attr] = _number(env, name, kind, low, high)
    if kw.get("mail_retry_min_backoff", 15.0) > kw.get("mail_retry_max_backoff", 3600.0):
        raise ConfigError("SCHOLARISE_MAIL_RETRY_MIN_BACKOFF must not exceed SCHOLARISE_MAIL_RETRY_MAX_BACKOFF.")
    if env.get("SCHOLARISE_MAIL_CA_FILE", "").strip():
        ca_file = Path(env["SCHOLARISE_MAIL_CA_FILE"].strip()).expanduser()
        if not ca_file.is_file():
            raise ConfigError(f"SCHOLARISE_MAIL_CA_FILE: there is no file at {ca_file}.")
        kw["mail_ca_file"] = ca_file
    fallbacks = tuple(k.strip() for k in env.get("SCHOLARISE_SECRET_KEY_FALLBACKS", "").split(",") if k.strip())
    if any(len(k) < 16 for k in fallbacks):
        raise ConfigError("SCHOLARISE_SECRET_KEY_FALLBACKS: every key must be at least 16 characters long.")
    kw["secret_key_fallbacks"] = fallbacks
    return kw


def not_addresses(bad: list[str]) -> str:
    """``'x' is not an email address`` / ``'x', 'y' are not email addresses``."""
    listed = ", ".join(map(repr, bad))
    return f"{listed} is not an email address" if len(bad) == 1 else f"{listed} are not email addresses"
