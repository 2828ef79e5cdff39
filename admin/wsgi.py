"""The WSGI entry point: ``gunicorn admin.wsgi:app`` (Procfile ``web``) or ``flask --app admin.wsgi run --debug``.

Like ``actors.worker``, this module has an import-time side effect on purpose: servers import a
module to find the app. It builds the app from the environment and, outside gunicorn, schedules
the background services about a second later (``actors.startup``), once per process. Under
gunicorn, ``gunicorn.conf.py`` schedules them in each worker after the fork instead, so a
``--preload`` master never starts anything.
"""

from __future__ import annotations

import logging
import sys

from werkzeug.serving import is_running_from_reloader

from actors.startup import schedule_startup
from admin import create_app
from scholarise.config import Settings
from scholarise.db import upgrade


def serves_requests() -> bool:
    """False in the Flask reloader's watcher process, which loads the app but only restarts the real server."""
    return is_running_from_reloader() or "werkzeug._reloader" not in sys.modules


if not logging.getLogger().handlers:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")

settings = Settings.from_env()
upgrade(settings)  # idempotent and locked, so no separate release step is needed
app = create_app(settings)

if "gunicorn" not in sys.modules:
    schedule_startup(settings, should_start=serves_requests)
