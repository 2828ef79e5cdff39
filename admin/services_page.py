"""The background services dashboard (``/settings/background-services``): status, health, activity, restart.

The status and the restart come from :mod:`actors.services` (the same functions as the JSON API
and the CLI); the activity figures and the throughput chart are read from the task tables.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import current_app, flash, jsonify, redirect, request, session, url_for
from flask_admin import expose

from admin.auth import SecurePage
from admin.extensions import db
from scholarise import activity
from scholarise.config import Settings
from scholarise.models import utcnow

WINDOWS = {"1h": (timedelta(hours=1), 30, "last hour"), "24h": (timedelta(hours=24), 48, "last 24 hours"),
           "7d": (timedelta(days=7), 56, "last 7 days")}


def _settings() -> Settings:
    return current_app.extensions["scholarise_settings"]  # type: ignore[no-any-return]


def describe_restart(result: dict[str, Any]) -> str:
    """One sentence a person can read from what ``restart_services`` returned."""
    parts = []
    init = result.get("initialize") or {}
    if result.get("restarted"):
        stopped, started = init.get("stopped") or [], init.get("started") or []
        parts.append(f"This process stopped {', '.join(stopped) or 'nothing'} and started "
                     f"{', '.join(started) or 'nothing'}.")
    else:
        parts.append("Nothing was running in this process to restart.")
    recovery = result.get("recovery") or {}
    released, rung = recovery.get("released_rows", 0), len(recovery.get("ring") or [])
    lost = len(recovery.get("lost_workers") or [])
    parts.append(f"Recovery released {released} row{'s' * (released != 1)} from {lost} lost "
                 f"worker{'s' * (lost != 1)} and resumed {rung} task{'s' * (rung != 1)}.")
    parts.append("A health check was queued." if result.get("probe_requested")
                 else "The health check could not be queued; it runs at its next interval.")
    return " ".join(parts)


class ServicesPage(SecurePage):
    """Admins only."""

    @expose("/")
    def index(self) -> Any:
        from actors.services import get_service_status

        key = request.args.get("window", "1h")
        key = key if key in WINDOWS else "1h"
        window, buckets, label = WINDOWS[key]
        status = get_service_status(settings=_settings())
        chart = activity.throughput(db.session, window=window, buckets=buckets)
        return self.render(
            "admin/services/dashboard.html", status=status, chart=chart, window_key=key, window_label=label,
            windows=WINDOWS, rate=activity.rows_per_minute(chart, window),
            counts=activity.status_counts(db.session, since=utcnow() - timedelta(hours=24)),
            active=activity.active_tasks(db.session, limit=10),
            recent=activity.recent_finished_tasks(db.session, limit=10),
            last_restart=session.pop("last_restart", None))

    @expose("/status.json")
    def status_json(self) -> Any:
        from actors.services import get_service_status

        return jsonify(get_service_status(settings=_settings()))

    @expose("/restart", methods=("POST",))
    def restart(self) -> Any:
        from actors.services import restart_services

        db.session.rollback()
        result = restart_services(settings=_settings())
        summary = describe_restart(result)
        session["last_restart"] = {"summary": summary, "at": utcnow().isoformat(timespec="seconds"),
                                   "by": self.user.email}
        flash("Restart done. What happened is described below.", "success")
        return redirect(url_for(".index"))
