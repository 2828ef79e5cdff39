"""Serve the site in one process; in the embedded mode the Dramatiq worker threads live here too.

The in-process broker only reaches consumers in the same process, so the embedded mode uses a
threaded in-process WSGI server (waitress) rather than a forking one. Production uses gunicorn
from the Procfile with Redis.
"""

from __future__ import annotations

import logging
from typing import Any

from scholarise.config import Settings

logger = logging.getLogger(__name__)


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 5000, worker: Any = None) -> None:
    """Serve until interrupted. Background services start about a second after the server (see
    ``actors.startup``): in the embedded mode the worker threads (``worker`` if one already runs)
    and the scheduler; they are stopped on the way out."""
    from waitress import serve as waitress_serve

    from actors import services
    from actors.startup import schedule_startup
    from admin import create_app

    app = create_app(settings)
    if worker is not None:
        services.adopt_worker(worker)
    schedule_startup(settings)
    print(f"Admin site: http://{host}:{port}/admin/  (Ctrl+C to stop)", flush=True)
    try:
        waitress_serve(app, host=host, port=port, threads=8, ident="scholarise")
    finally:
        services.shutdown()
