"""API tokens: create (shown once), verify, revoke.

A token is ``scht_`` followed by 32 random bytes (URL-safe base64). Only its SHA-256 hash is stored:
the secret has 256 bits of entropy, so a fast hash is enough (there is nothing to brute-force, unlike
a password), and verification is one indexed lookup. The first characters are kept as a display
prefix so a person can tell which token is which without ever seeing one again.

Callers own the transaction: these functions flush, never commit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from scholarise.errors import InputError, NotFoundError, ScholariseError
from scholarise.models import ApiToken, Branch, Role, utcnow

TOKEN_PREFIX = "scht_"
DISPLAY_PREFIX_LENGTH = 12
# last_used_at is written at most this often per token, so reading the API is not a write per request.
TOUCH_INTERVAL = timedelta(minutes=1)


class InvalidTokenError(ScholariseError):
    """The presented token is unknown, malformed or revoked (the message never echoes it)."""


@dataclass(frozen=True)
class NewToken:
    """A freshly created token: ``secret`` exists only here and is never stored."""

    token: ApiToken
    secret: str


def hash_token(secret: str) -> str:
    """The stored form of a token: hex SHA-256."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(session: Session, *, role: str, branch: Branch | None = None, name: str | None = None,
                 now: datetime | None = None) -> NewToken:
    """Store a new token and return it with its secret (show the secret once; it cannot be recovered).

    Args:
        role: ``admin`` (every branch, services and email settings) or ``staff`` (one branch's tasks).
        branch: required for staff tokens; refused for admin tokens, which see every branch.
        name: what the token is for, e.g. the application using it (default: "<role> token").

    Raises:
        InputError: unknown role, a staff token without a branch, an admin token with one, or a bad name.
    """
    if role not in Role.ALL:
        raise InputError(f"Role must be one of {', '.join(Role.ALL)} (got {role!r}).")
    if role == Role.STAFF and branch is None:
        raise InputError("A staff token belongs to one branch: give the branch.")
    if role == Role.ADMIN and branch is not None:
        raise InputError("Admin tokens see every branch; a branch is only for staff tokens.")
    clean_name = (name if name is not None else f"{role} token").strip()
    if not clean_name or len(clean_name) > 100:
        raise InputError("A token name must be 1 to 100 characters.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(name=clean_name, token_hash=hash_token(secret), prefix=secret[:DISPLAY_PREFIX_LENGTH],
                     role=role, branch_id=branch.id if branch else None, created_at=now or utcnow())
    session.add(token)
    session.flush()
    return NewToken(token=token, secret=secret)


def verify_token(session: Session, secret: str) -> ApiToken:
    """The active token whose secret is ``secret`` (a read only; see :func:`record_use`).

    Raises:
        InvalidTokenError: unknown, malformed or revoked token.
    """
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        raise InvalidTokenError("The API token is not valid.")
    digest = hash_token(secret)
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        raise InvalidTokenError("The API token is not valid.")
    if token.revoked_at is not None:
        raise InvalidTokenError("The API token has been revoked.")
    return token


def record_use(session: Session, token_id: int, *, now: datetime | None = None) -> bool:
    """Set the token's ``last_used_at`` unless it was set less than :data:`TOUCH_INTERVAL` ago.

    One guarded UPDATE, so reading the API is not a write per request. Returns whether it wrote.
    """
    now = now or utcnow()
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id,
               or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= now - TOUCH_INTERVAL))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def revoke_token(session: Session, token_id: int, *, now: datetime | None = None) -> tuple[ApiToken, bool]:
    """Revoke a token; returns it and whether this call revoked it (False: it already was).

    Raises:
        NotFoundError: no token with that id.
    """
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFoundError(f"There is no API token #{token_id}.")
    if token.revoked_at is not None:
        return token, False
    token.revoked_at = now or utcnow()
    session.flush()
    return token, True


def list_tokens(session: Session) -> list[ApiToken]:
    """Every token, newest first (hashes stay in the database; show the prefix)."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id.desc())))
