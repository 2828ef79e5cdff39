"""Broker selection and the shared provider rate limiter, built from Settings.

Dramatiq binds an actor to a broker when the actor is declared. So that importing ``actors`` has
no side effects, actors are declared on a placeholder broker and :func:`configure` rebinds them to
the real one (Redis, or the in-process stub broker for the embedded mode and tests).
"""

from __future__ import annotations

import importlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.rate_limits import BucketRateLimiter
from dramatiq.rate_limits.backends import RedisBackend, StubBackend

from actors import runtime
from scholarise.config import Settings
from scholarise.providers.base import Pacer, no_pacing
from scholarise.providers.pacing import plan_pacing

logger = logging.getLogger(__name__)

placeholder = StubBroker()
placeholder.emit_after("process_boot")
_declared: list[dramatiq.Actor[Any, Any]] = []


def actor(**options: Any) -> Callable[[Callable[..., Any]], dramatiq.Actor[Any, Any]]:
    """``dramatiq.actor`` on the placeholder broker, remembered so :func:`configure` can rebind it."""

    def decorate(fn: Callable[..., Any]) -> dramatiq.Actor[Any, Any]:
        declared = dramatiq.actor(fn, broker=placeholder, **options)
        _declared.append(declared)
        return declared

    return decorate


def build_broker(settings: Settings) -> dramatiq.Broker:
    """Redis when ``settings.broker == "redis"``, else Dramatiq's in-process stub broker."""
    if settings.broker == "redis":
        from dramatiq.brokers.redis import RedisBroker

        return RedisBroker(url=settings.redis_url, namespace="scholarise")
    broker = StubBroker()
    broker.emit_after("process_boot")
    return broker


def build_pacer(settings: Settings) -> Pacer:
    """A blocking pacer over one Dramatiq BucketRateLimiter shared by every process on the broker."""
    limit = settings.effective_rate_limit
    if not limit:
        return no_pacing
    pacing = plan_pacing(limit, settings.provider_rate_window, margin=settings.provider_rate_margin)
    if settings.broker == "redis":
        import redis

        backend: Any = RedisBackend(client=redis.Redis.from_url(settings.redis_url))
    else:
        backend = StubBackend()
    limiter = BucketRateLimiter(backend, f"scholarise-provider-{settings.provider_name}",
                                limit=pacing.per_bucket, bucket=pacing.bucket_ms)
    logger.info("provider calls paced at %.1f/s (%d per %d ms) for a limit of %d per %.0f s",
                pacing.rate, pacing.per_bucket, pacing.bucket_ms, limit, settings.provider_rate_window)
    bucket_s = pacing.bucket_ms / 1000.0

    def pace() -> None:
        while True:
            with limiter.acquire(raise_on_failure=False) as acquired:
                if acquired:
                    return
            # Sleep to the next bucket boundary, with jitter so waiting threads do not stampede.
            now = time.time()
            time.sleep(bucket_s - (now % bucket_s) + random.uniform(0, bucket_s / 4))

    return pace


# Every module that declares actors; configure() imports them all before rebinding.
ACTOR_MODULES = ("actors.imports", "actors.health", "actors.notifications")


def configure(settings: Settings) -> dramatiq.Broker:
    """Build the broker and runtime for ``settings`` and rebind every declared actor to that broker."""
    for module in ACTOR_MODULES:
        importlib.import_module(module)
    broker = build_broker(settings)
    if settings.broker != "stub":  # tests on the stub broker drive their workers and opt in explicitly
        from actors.middleware import WorkerHeartbeats

        broker.add_middleware(WorkerHeartbeats())
    for declared in _declared:
        declared.broker = broker
        broker.declare_actor(declared)
    dramatiq.set_broker(broker)
    rt = runtime.Runtime.build(settings, build_pacer(settings))
    from actors.notifications import notify_on_finish  # outbox row in the finishing transaction, sent after commit

    rt.finish_hooks.append(notify_on_finish)
    runtime.set_runtime(rt)
    return broker
