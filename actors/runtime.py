"""Per-process resources the actors share: settings, database sessions, the provider, the pacer.

Built once by :func:`actors.broker.configure`; never at import.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from scholarise.config import Settings
from scholarise.db import make_engine, make_session_factory
from scholarise.processing import FinishHook, WorkContext
from scholarise.providers.base import IdentityProvider, Pacer
from scholarise.providers.factory import make_provider

if TYPE_CHECKING:
    pass


def worker_identity() -> str:
    """``host:pid``: enough to tell whether the owner of a claim is still alive."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    pacer: Pacer
    finish_hooks: list[FinishHook] = field(default_factory=list)
    _local: threading.local = field(default_factory=threading.local)

    @classmethod
    def build(cls, settings: Settings, pacer: Pacer) -> Runtime:
        engine = make_engine(settings)
        return cls(settings, engine, make_session_factory(engine), pacer)

    def provider(self) -> IdentityProvider:
        """One provider per thread (a pooled HTTP session is not shared between threads)."""
        provider = getattr(self._local, "provider", None)
        if provider is None:
            provider = make_provider(self.settings, self.session_factory, pace=self.pacer)
            self._local.provider = provider
        return provider

    def work_context(self) -> WorkContext:
        return WorkContext(
            session_factory=self.session_factory,
            provider=self.provider(),
            settings=self.settings,
            worker_id=worker_identity(),
            on_task_finished=list(self.finish_hooks),
        )

    def close(self) -> None:
        self.engine.dispose()


_current: Runtime | None = None


def set_runtime(runtime: Runtime | None) -> None:
    global _current
    if _current is not None and _current is not runtime:
        _current.close()
    _current = runtime


def current() -> Runtime:
    """The configured runtime.

    Raises:
        RuntimeError: ``actors.configure(settings)`` has not been called in this process.
    """
    if _current is None:
        raise RuntimeError("actors are not configured: call actors.configure(settings) first")
    return _current
