"""The embedded identity provider: accounts live in the app's own database.

Same semantics as Clerk for the importer (unique email and external id, idempotent look-ups),
so the main job runs end to end with no outside service.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence

from sqlalchemy import insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from scholarise.db import session_scope
from scholarise.models import LocalAccount, utcnow
from scholarise.providers.base import Account, AlreadyExistsError, NewUser, Pacer, RowRejectedError, no_pacing

_ALPHABET = string.ascii_letters + string.digits


def _new_id() -> str:
    return "user_" + "".join(secrets.choice(_ALPHABET) for _ in range(27))


def _account(row: LocalAccount) -> Account:
    return Account(id=row.id, email=row.email, external_id=row.external_id, private_metadata=dict(row.private_metadata))


class LocalProvider:
    """Accounts in the ``local_accounts`` table; each call is its own transaction, like a remote API."""

    name = "local"

    def __init__(self, session_factory: sessionmaker[Session], *, pace: Pacer = no_pacing) -> None:
        self._factory = session_factory
        self._pace = pace

    def find_users(self, *, emails: Sequence[str] = (), external_ids: Sequence[str] = ()) -> list[Account]:
        self._pace()
        emails = [e.strip().lower() for e in emails]
        clauses = []
        if emails:
            clauses.append(LocalAccount.email.in_(emails))
        if external_ids:
            clauses.append(LocalAccount.external_id.in_(list(external_ids)))
        if not clauses:
            return []
        with session_scope(self._factory) as session:
            return [_account(r) for r in session.scalars(select(LocalAccount).where(or_(*clauses)))]

    def create_user(self, user: NewUser) -> Account:
        self._pace()
        email = user.email.strip().lower()
        if "@" not in email:
            raise RowRejectedError("form_param_format_invalid", f"{email!r} must be a valid email address.")
        values = {
            "id": _new_id(),
            "email": email,
            "external_id": user.external_id,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "private_metadata": dict(user.private_metadata),
            "created_at": utcnow(),
        }
        try:
            with session_scope(self._factory) as session:
                session.execute(insert(LocalAccount), [values])
        except IntegrityError:
            raise AlreadyExistsError("That email address or external id is taken.", params=("email_address",)) from None
        return Account(id=values["id"], email=email, external_id=user.external_id,
                       private_metadata=dict(user.private_metadata))

    def close(self) -> None:
        """Nothing pooled of its own: the session factory's engine belongs to the caller."""
