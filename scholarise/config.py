"""One settings object, read from the environment in exactly one place.

Every other module receives a :class:`Settings`; nothing else reads ``os.environ``.
A bad value fails at start with a :class:`ConfigError` that names the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scholarise.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INSTANCE = PROJECT_ROOT / "instance"

# Clerk's documented Backend API limits (requests per 10 s), picked by the key's prefix.
CLERK_DEV_LIMIT = 100
CLERK_PROD_LIMIT = 1000


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be true or false (got {raw!r}).")


def _parse_int(name: str, raw: str, *, low: int, high: int) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {raw!r}).") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high} (got {value}).")
    return value


def _parse_float(name: str, raw: str, *, low: float, high: float) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number (got {raw!r}).") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high} (got {value}).")
    return value


def _check_url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    value = raw.strip()
    if not value.startswith(schemes):
        raise ConfigError(f"{name} must start with one of {', '.join(schemes)} (got a value that does not).")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the services need to know, with defaults for the embedded mode."""

    instance_path: Path = DEFAULT_INSTANCE
    database_url: str = ""
    redis_url: str | None = None
    broker: str = "embedded"  # "embedded" (in-process), "redis", or "stub" (tests drive workers)
    secret_key: str = field(default="", repr=False)
    clerk_secret_key: str | None = field(default=None, repr=False)
    clerk_api_url: str = "https://api.clerk.com/v1"
    provider_rate_limit: int = 0  # requests per window; 0 = from the provider's documented default
    provider_rate_window: float = 10.0
    provider_rate_margin: float = 0.95
    provider_timeout: float = 10.0
    provider_max_attempts: int = 6
    batch_size: int = 10
    batch_lease_seconds: int = 300
    progress_interval: float = 1.0
    worker_threads: int = 4
    max_upload_bytes: int = 10 * 1024 * 1024
    max_rows: int = 100_000
    public_url: str = "http://127.0.0.1:5000"
    trusted_proxies: int = 0  # reverse proxies in front of the web process (for the client address)
    templates_dir: Path = PROJECT_ROOT / "templates"
    debug: bool = False
    # Monitoring: how often probes run, how often each process says it is alive, and when it counts as gone.
    health_interval: float = 300.0
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 30.0
    health_retention_days: float = 7.0
    startup_delay: float = 1.0
    # Email: the environment default SMTP server uses Flask-Mail's own names (parsed in scholarise.email_settings).
    mail_server: str | None = None
    mail_port: int | None = None
    mail_use_tls: bool = False
    mail_use_ssl: bool = False
    mail_username: str | None = None
    mail_password: str | None = field(default=None, repr=False)
    mail_default_sender: str | None = None
    admin_emails: tuple[str, ...] = ()
    mail_timeout: float = 15.0
    mail_ca_file: Path | None = None
    mail_max_attempts: int = 16
    mail_retry_min_backoff: float = 15.0
    mail_retry_max_backoff: float = 3600.0
    secret_key_fallbacks: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.instance_path / 'scholarise.db'}")
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ConfigError("SCHOLARISE_HEARTBEAT_TIMEOUT must be longer than SCHOLARISE_HEARTBEAT_INTERVAL "
                              f"(got {self.heartbeat_timeout} s and {self.heartbeat_interval} s).")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dotenv: Path | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``) plus an optional ``.env`` file.

        Values in the real environment win over the ``.env`` file.

        Raises:
            ConfigError: a value is malformed; the message names the variable.
        """
        env: dict[str, str] = {}
        dotenv_path = dotenv if dotenv is not None else PROJECT_ROOT / ".env"
        if environ is None and dotenv_path.is_file():
            from dotenv import dotenv_values

            env.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        env.update(os.environ if environ is None else environ)
        return cls._from_mapping(env)

    @classmethod
    def _from_mapping(cls, env: Mapping[str, str]) -> Settings:
        kw: dict[str, Any] = {}
        if env.get("SCHOLARISE_INSTANCE_PATH"):
            kw["instance_path"] = Path(env["SCHOLARISE_INSTANCE_PATH"]).resolve()
        if env.get("DATABASE_URL"):
            url = _check_url("DATABASE_URL", env["DATABASE_URL"], ("sqlite:", "postgresql", "postgres:"))
            if url.startswith("postgres://"):  # Heroku's spelling
                url = "postgresql://" + url[len("postgres://") :]
            kw["database_url"] = url
        if env.get("REDIS_URL"):
            kw["redis_url"] = _check_url("REDIS_URL", env["REDIS_URL"], ("redis://", "rediss://", "unix://"))
            kw["broker"] = "redis"
        if env.get("SCHOLARISE_BROKER"):
            broker = env["SCHOLARISE_BROKER"].strip().lower()
            if broker not in {"embedded", "redis", "stub"}:
                raise ConfigError("SCHOLARISE_BROKER must be embedded, redis or stub.")
            if broker == "redis" and "redis_url" not in kw:
                raise ConfigError("SCHOLARISE_BROKER=redis needs REDIS_URL.")
            kw["broker"] = broker
        if env.get("SCHOLARISE_SECRET_KEY"):
            key = env["SCHOLARISE_SECRET_KEY"]
            if len(key) < 16:
                raise ConfigError("SCHOLARISE_SECRET_KEY must be at least 16 characters long.")
            kw["secret_key"] = key
        if env.get("CLERK_SECRET_KEY"):
            key = env["CLERK_SECRET_KEY"].strip()
            if not key.startswith(("sk_test_", "sk_live_")):
                raise ConfigError("CLERK_SECRET_KEY must start with sk_test_ or sk_live_.")
            kw["clerk_secret_key"] = key
        if env.get("CLERK_API_URL"):
            kw["clerk_api_url"] = _check_url("CLERK_API_URL", env["CLERK_API_URL"], ("http://", "https://")).rstrip("/")
        ints = {
            "SCHOLARISE_PROVIDER_RATE_LIMIT": ("provider_rate_limit", 2, 1_000_000),
            "SCHOLARISE_PROVIDER_MAX_ATTEMPTS": ("provider_max_attempts", 1, 50),
            "SCHOLARISE_BATCH_SIZE": ("batch_size", 1, 500),
            "SCHOLARISE_BATCH_LEASE_SECONDS": ("batch_lease_seconds", 10, 86_400),
            "SCHOLARISE_WORKER_THREADS": ("worker_threads", 1, 64),
            "SCHOLARISE_MAX_UPLOAD_BYTES": ("max_upload_bytes", 1024, 1024**3),
            "SCHOLARISE_MAX_ROWS": ("max_rows", 1, 10_000_000),
            "SCHOLARISE_TRUSTED_PROXIES": ("trusted_proxies", 0, 10),
        }
        for name, (attr, low, high) in ints.items():
            if env.get(name, "").strip():
                kw[attr] = _parse_int(name, env[name], low=low, high=high)
        floats = {
            "SCHOLARISE_PROVIDER_RATE_WINDOW": ("provider_rate_window", 0.1, 3600.0),
            "SCHOLARISE_PROVIDER_RATE_MARGIN": ("provider_rate_margin", 0.1, 1.0),
            "SCHOLARISE_PROVIDER_TIMEOUT": ("provider_timeout", 0.1, 300.0),
            "SCHOLARISE_PROGRESS_INTERVAL": ("progress_interval", 0.0, 60.0),
            "SCHOLARISE_HEALTH_INTERVAL": ("health_interval", 1.0, 86_400.0),
            "SCHOLARISE_HEARTBEAT_INTERVAL": ("heartbeat_interval", 0.1, 600.0),
            "SCHOLARISE_HEARTBEAT_TIMEOUT": ("heartbeat_timeout", 0.5, 3600.0),
            "SCHOLARISE_HEALTH_RETENTION_DAYS": ("health_retention_days", 0.01, 3650.0),
            "SCHOLARISE_STARTUP_DELAY": ("startup_delay", 0.0, 60.0),
        }
        for name, (attr, lowf, highf) in floats.items():
            if env.get(name, "").strip():
                kw[attr] = _parse_float(name, env[name], low=lowf, high=highf)
        if env.get("SCHOLARISE_PUBLIC_URL"):
            kw["public_url"] = _check_url("SCHOLARISE_PUBLIC_URL", env["SCHOLARISE_PUBLIC_URL"], ("http://", "https://"))
        if env.get("SCHOLARISE_DEBUG"):
            kw["debug"] = _parse_bool("SCHOLARISE_DEBUG", env["SCHOLARISE_DEBUG"])
        from scholarise.mail_config import mail_settings_from_env  # MAIL_* and the secret-key fallbacks

        kw.update(mail_settings_from_env(env))
        return cls(**kw)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (tests and CLI flags use this)."""
        return replace(self, **changes)

    @property
    def provider_name(self) -> str:
        """``clerk`` when a Clerk key is configured, else the embedded ``local`` provider."""
        return "clerk" if self.clerk_secret_key else "local"

    @property
    def effective_rate_limit(self) -> int:
        """Requests allowed per ``provider_rate_window``: configured, or Clerk's documented default."""
        if self.provider_rate_limit:
            return self.provider_rate_limit
        if self.clerk_secret_key and self.clerk_secret_key.startswith("sk_live_"):
            return CLERK_PROD_LIMIT
        if self.clerk_secret_key:
            return CLERK_DEV_LIMIT
        return 0  # the local provider is not paced

    @property
    def fernet_secret(self) -> str:
        """The secret stored passwords are encrypted under: SCHOLARISE_SECRET_KEY, else the embedded instance secret."""
        return self.secret_key or _dev_secret(self.instance_path)

    @property
    def outbox_dir(self) -> Path:
        return self.instance_path / "outbox"

    def flask_config(self) -> dict[str, Any]:
        """The UPPERCASE keys Flask and its extensions read."""
        return {
            "SECRET_KEY": self.secret_key or _dev_secret(self.instance_path),
            "DEBUG": self.debug,
            "MAX_CONTENT_LENGTH": self.max_upload_bytes + 64 * 1024,
            "SCHOLARISE_SETTINGS": self,
        }


def _dev_secret(instance_path: Path) -> str:
    """A random per-instance secret for the embedded mode, kept in the instance folder (never in the repo)."""
    import secrets

    path = instance_path / "secret_key"
    if path.is_file():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    path.write_text(value)
    path.chmod(0o600)
    return value
