"""API tokens: shown once, stored hashed, verified by hash, revocable, scoped by role and branch."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from scholarise.api_tokens import (
    TOKEN_PREFIX,
    InvalidTokenError,
    create_token,
    hash_token,
    list_tokens,
    record_use,
    revoke_token,
    verify_token,
)
from scholarise.errors import InputError, NotFoundError
from scholarise.models import ApiToken, utcnow
from scholarise.tasks import get_or_create_branch


def test_a_new_token_is_returned_once_and_only_its_hash_is_stored(session: Session) -> None:
    new = create_token(session, role="admin", name="timetable app")
    assert new.secret.startswith(TOKEN_PREFIX) and len(new.secret) > 40
    stored = session.get(ApiToken, new.token.id)
    assert stored.token_hash == hash_token(new.secret) and new.secret not in stored.token_hash
    assert new.secret.startswith(stored.prefix) and len(stored.prefix) < len(new.secret) // 3
    assert new.secret not in repr(stored) and stored.token_hash not in repr(stored)


def test_two_tokens_never_share_a_secret(session: Session) -> None:
    assert create_token(session, role="admin").secret != create_token(session, role="admin").secret


def test_a_token_verifies_by_its_secret_and_carries_its_role_and_branch(session: Session) -> None:
    branch = get_or_create_branch(session, "North")
    new = create_token(session, role="staff", branch=branch)
    token = verify_token(session, new.secret)
    assert (token.id, token.role, token.branch_id) == (new.token.id, "staff", branch.id)


@pytest.mark.parametrize("presented", ["", "nonsense", TOKEN_PREFIX, TOKEN_PREFIX + "x" * 43, TOKEN_PREFIX + "x" * 500])
def test_unknown_or_malformed_tokens_are_refused(session: Session, presented: str) -> None:
    create_token(session, role="admin")
    with pytest.raises(InvalidTokenError, match="not valid"):
        verify_token(session, presented)


def test_a_revoked_token_is_refused_and_revoking_again_changes_nothing(session: Session) -> None:
    new = create_token(session, role="admin")
    token, changed = revoke_token(session, new.token.id)
    assert changed and token.revoked_at is not None
    with pytest.raises(InvalidTokenError, match="revoked"):
        verify_token(session, new.secret)
    when = token.revoked_at
    token, changed = revoke_token(session, new.token.id)
    assert not changed and token.revoked_at == when


def test_revoking_a_missing_token_says_so(session: Session) -> None:
    with pytest.raises(NotFoundError, match="#42"):
        revoke_token(session, 42)


def test_staff_tokens_need_a_branch_and_admin_tokens_refuse_one(session: Session) -> None:
    with pytest.raises(InputError, match="staff token belongs to one branch"):
        create_token(session, role="staff")
    with pytest.raises(InputError, match="only for staff"):
        create_token(session, role="admin", branch=get_or_create_branch(session, "North"))
    with pytest.raises(InputError, match="Role must be one of"):
        create_token(session, role="root")
    with pytest.raises(InputError, match="1 to 100"):
        create_token(session, role="admin", name=" ")
    assert session.query(ApiToken).count() == 0


def test_use_is_recorded_at_most_once_a_minute(session: Session) -> None:
    token = create_token(session, role="admin").token
    now = utcnow()
    assert record_use(session, token.id, now=now)
    assert not record_use(session, token.id, now=now + timedelta(seconds=30))
    assert record_use(session, token.id, now=now + timedelta(seconds=61))
    session.expire_all()
    assert session.get(ApiToken, token.id).last_used_at == now + timedelta(seconds=61)


def test_tokens_are_listed_newest_first(session: Session) -> None:
    first, second = create_token(session, role="admin", name="a"), create_token(session, role="admin", name="b")
    assert [t.id for t in list_tokens(session)] == [second.token.id, first.token.id]
