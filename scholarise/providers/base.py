"""What an identity provider is to the importer: find users, create one, with typed outcomes.

Providers make exactly one attempt per call and classify what happened; retrying, pacing
policy and reconciliation live in :mod:`scholarise.processing`, once for every provider.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from scholarise.errors import ProviderError

Pacer = Callable[[], None]
"""Called before every request to the provider; blocks until the shared rate limiter allows it."""


def no_pacing() -> None:
    """The pacer for providers without a rate limit."""


@dataclass(frozen=True)
class NewUser:
    """The account to create. ``external_id`` is stable per person, so a re-run finds it again."""

    email: str
    first_name: str
    last_name: str
    external_id: str
    private_metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Account:
    """An account as the provider holds it (emails lower-cased)."""

    id: str
    email: str
    external_id: str | None = None
    private_metadata: dict[str, Any] = field(default_factory=dict)


class AlreadyExistsError(ProviderError):
    """The provider refused to create: an identifier (email, external id) is taken."""

    def __init__(self, message: str, *, params: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.params = tuple(params)


class RowRejectedError(ProviderError):
    """The provider refused this one row (400/422 validation): fail the row, not the task."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class IdentityProvider(Protocol):
    """The interface :mod:`scholarise.processing` drives.

    Each method makes one attempt. It raises
    :class:`AlreadyExistsError` or :class:`RowRejectedError` for row outcomes,
    :class:`~scholarise.errors.ProviderRetryableError` for transient failures, and
    :class:`~scholarise.errors.ProviderFatalError` when the provider refuses all work.
    """

    name: str

    def find_users(self, *, emails: Sequence[str] = (), external_ids: Sequence[str] = ()) -> list[Account]:
        """Every account whose primary email or external id is in the lists (at most 100 of each)."""
        ...

    def create_user(self, user: NewUser) -> Account:
        """Create one account and return it."""
        ...

    def close(self) -> None:
        """Release pooled connections."""
        ...
