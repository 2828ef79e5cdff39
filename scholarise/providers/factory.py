"""Pick the identity provider from settings: Clerk when a key is set, else the embedded one."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from scholarise.config import Settings
from scholarise.providers.base import IdentityProvider, Pacer, no_pacing


def make_provider(settings: Settings, session_factory: sessionmaker[Session], *,
                  pace: Pacer = no_pacing) -> IdentityProvider:
    """A provider ready to use; ``pace`` is called before every request it makes."""
    if settings.clerk_secret_key:
        from scholarise.providers.clerk import ClerkProvider

        return ClerkProvider(settings.clerk_api_url, settings.clerk_secret_key, timeout=settings.provider_timeout,
                             pace=pace)
    from scholarise.providers.local import LocalProvider

    return LocalProvider(session_factory, pace=pace)
