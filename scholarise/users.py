"""Admin-site accounts: create them, check passwords, and throttle guessing.

Passwords are stored as salted scrypt hashes (``werkzeug.security``); the plain password is never
stored, logged or put in a message. Sign-in failures are recorded per account and network
address, and too many recent ones refuse further tries for a while, whatever the password:
five per account from one address, or twenty from one address across all accounts, in fifteen
minutes. A success clears the account's count for that address, so a person who mistyped a few
times is not locked out after signing in.

Like every service, these functions flush and never commit; the caller owns the transaction
(which matters for :func:`authenticate`: commit even when it refuses, so the failure counts).
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from scholarise.errors import InputError, NotFoundError
from scholarise.models import AdminUser, Branch, Role, SignInAttempt, utcnow
from scholarise.tasks import get_or_create_branch

logger = logging.getLogger(__name__)

MIN_PASSWORD_LENGTH = 10
FIRST_ADMIN_EMAIL = "admin@example.org"
WRONG_CREDENTIALS = "The email or password is not right. Check both and try again."
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_KEEP_ATTEMPTS = timedelta(days=1)


@dataclass(frozen=True)
class SignInLimits:
    """How many failed sign-ins are allowed inside ``window`` before tries are refused."""

    per_account_address: int = 5
    per_address: int = 20
    window: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class SignInResult:
    """The outcome of :func:`authenticate`: a user, or a message for the person signing in."""

    user: AdminUser | None = None
    message: str | None = None
    retry_after: int | None = None  # seconds, when refused for too many failures

    @property
    def ok(self) -> bool:
        return self.user is not None


def normalize_email(email: str | None) -> str:
    """The trimmed, lower-cased sign-in email.

    Raises:
        InputError: it is not an email address.
    """
    clean = (email or "").strip().lower()
    if not clean or len(clean) > 254 or not _EMAIL.match(clean):
        raise InputError(f"{(email or '').strip() or 'An empty value'!r} is not an email address.")
    return clean


def check_password_strength(password: str, *, email: str = "") -> None:
    """Raises InputError when ``password`` is too easy to guess (the message says what is needed)."""
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise InputError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters long.")
    if len(set(password)) < 4:
        raise InputError("The password needs more variety than a few repeated characters.")
    if email and password.strip().lower() in {email.lower(), email.split("@")[0].lower()}:
        raise InputError("The password must not be the email address.")


def generate_password() -> str:
    """A random password for a new account (about 96 bits), shown once to whoever made the account."""
    return secrets.token_urlsafe(12)


def create_user(session: Session, email: str, password: str, *, role: str = Role.STAFF,
                branch: str | Branch | None = None, name: str = "") -> AdminUser:
    """Create an account. Staff need a branch (given by name; created if new).

    Raises:
        InputError: bad email, weak password, unknown role, staff without a branch, or the
            email already has an account.
    """
    clean = normalize_email(email)
    if role not in Role.ALL:
        raise InputError(f"The role must be one of {', '.join(Role.ALL)} (got {role!r}).")
    check_password_strength(password, email=clean)
    if session.scalar(select(AdminUser.id).where(AdminUser.email == clean)) is not None:
        raise InputError(f"There is already an account for {clean}.")
    branch_obj = branch if isinstance(branch, Branch) or branch is None else get_or_create_branch(session, branch)
    if role == Role.STAFF and branch_obj is None:
        raise InputError("Staff accounts need a branch: staff see and import for their own branch only.")
    user = AdminUser(email=clean, name=(name or "").strip()[:120], password_hash=generate_password_hash(password),
                     role=role, branch_id=branch_obj.id if branch_obj else None, active=True,
                     password_changed_at=utcnow())
    session.add(user)
    session.flush()
    logger.info("account created: %s (%s)", clean, role)
    return user


def find_user(session: Session, email: str) -> AdminUser:
    """Raises NotFoundError when no account has that email."""
    user = session.scalar(select(AdminUser).where(AdminUser.email == (email or "").strip().lower()))
    if user is None:
        raise NotFoundError(f"There is no account for {email!r}.")
    return user


def set_password(session: Session, email: str, password: str) -> AdminUser:
    """Replace an account's password.

    Raises:
        NotFoundError: no such account.
        InputError: the password is too weak.
    """
    user = find_user(session, email)
    check_password_strength(password, email=user.email)
    user.password_hash = generate_password_hash(password)
    user.password_changed_at = utcnow()
    session.flush()
    return user


def set_active(session: Session, email: str, active: bool) -> AdminUser:
    """Enable or disable an account; a disabled account is signed out on its next request.

    Raises:
        NotFoundError: no such account.
    """
    user = find_user(session, email)
    user.active = active
    session.flush()
    return user


def list_users(session: Session) -> list[AdminUser]:
    return list(session.scalars(select(AdminUser).order_by(AdminUser.email)))


def active_user(session: Session, user_id: int) -> AdminUser | None:
    """The account behind a signed-in session, or None when it is gone or disabled."""
    user = session.get(AdminUser, user_id)
    return user if user is not None and user.active else None


def has_admin(session: Session) -> bool:
    return session.scalar(select(AdminUser.id).where(AdminUser.role == Role.ADMIN).limit(1)) is not None


def ensure_first_admin(session: Session, email: str = FIRST_ADMIN_EMAIL) -> tuple[AdminUser, str] | None:
    """Create an admin with a generated password when there is no admin yet.

    Returns:
        ``(user, password)`` when an account was made (show the password once, never log it),
        or None when an admin already exists.
    """
    if has_admin(session):
        return None
    password = generate_password()
    return create_user(session, email, password, role=Role.ADMIN, name="Administrator"), password


@cache
def _decoy_hash() -> str:
    return generate_password_hash(secrets.token_hex(16))


def authenticate(session: Session, email: str, password: str, address: str, *,
                 limits: SignInLimits = SignInLimits(), now: datetime | None = None) -> SignInResult:
    """Check a sign-in and record it; refuse while the account or address has too many recent failures.

    Every wrong answer gets the same message and takes as long (a decoy hash is checked for
    unknown emails), so the page does not reveal which emails have accounts.
    """
    now = now or utcnow()
    address = (address or "unknown")[:64]
    clean = (email or "").strip().lower()[:254]
    session.execute(delete(SignInAttempt).where(SignInAttempt.created_at < now - _KEEP_ATTEMPTS))
    wait = _seconds_locked(session, clean, address, limits, now)
    if wait:
        minutes = max(1, round(wait / 60))
        return SignInResult(message=f"Too many failed sign-in attempts. Wait {minutes} minute{'s' * (minutes > 1)} "
                                    "and try again, or ask an administrator to reset your password.",
                            retry_after=wait)
    user = session.scalar(select(AdminUser).where(AdminUser.email == clean)) if clean else None
    matches = check_password_hash(user.password_hash if user else _decoy_hash(), password or "")
    succeeded = bool(user is not None and matches)
    session.add(SignInAttempt(email=clean, address=address, succeeded=succeeded and user.active, created_at=now))
    if not succeeded or user is None:
        session.flush()
        return SignInResult(message=WRONG_CREDENTIALS)
    if not user.active:
        session.flush()
        return SignInResult(message="This account is disabled. Ask an administrator to enable it.")
    user.last_login_at = now
    session.flush()
    return SignInResult(user=user)


def _seconds_locked(session: Session, email: str, address: str, limits: SignInLimits, now: datetime) -> int:
    since = now - limits.window
    last_success = session.scalar(
        select(func.max(SignInAttempt.created_at)).where(
            SignInAttempt.email == email, SignInAttempt.address == address, SignInAttempt.succeeded.is_(True))
    )
    account_since = max(since, last_success) if last_success else since
    checks = (
        ((SignInAttempt.email == email) & (SignInAttempt.address == address), account_since,
         limits.per_account_address),
        (SignInAttempt.address == address, since, limits.per_address),
    )
    wait = 0
    for where, start, limit in checks:
        failures = list(session.scalars(
            select(SignInAttempt.created_at)
            .where(where, SignInAttempt.succeeded.is_(False), SignInAttempt.created_at > start)
            .order_by(SignInAttempt.created_at.desc())
            .limit(limit)
        ))
        if len(failures) >= limit:
            # Locked until the oldest of the last ``limit`` failures leaves the window.
            wait = max(wait, int((failures[-1] + limits.window - now).total_seconds()) + 1)
    return wait
