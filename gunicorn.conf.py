"""gunicorn settings for the ``web`` process (``gunicorn admin.wsgi:app``; gunicorn reads this file from the
working directory). gunicorn itself honours ``PORT`` (binds 0.0.0.0:$PORT) and ``WEB_CONCURRENCY`` (workers).

Each worker process initialises the background services about a second after it has loaded the
app — in the worker, after the fork, so a ``--preload`` master never runs them — and stops them
when it exits. In the embedded mode one worker at a time runs the scheduler (a file lock); in the
distributed mode the ``clock`` process runs it and web workers run no scheduler at all.
"""

from __future__ import annotations

wsgi_app = "admin.wsgi:app"
graceful_timeout = 30
timeout = 60
accesslog = "-"

# Our own log lines (service start, recovery) go to stderr next to gunicorn's.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
    },
}


def post_worker_init(worker):  # type: ignore[no-untyped-def]
    """Schedule this worker's services (about a second from now, once per process)."""
    from actors.startup import schedule_startup

    schedule_startup(worker.app.wsgi().config["SCHOLARISE_SETTINGS"])


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    """Stop what this worker ran and mark its heartbeat stopped."""
    from actors import services

    services.shutdown()
