"""How values look on the pages: status badges, progress bars, times, durations.

Everything that came from a user or a file is escaped here (``Markup.format`` escapes its
arguments), so a task titled ``<img src=x onerror=...>`` shows as that text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask, url_for
from markupsafe import Markup

from scholarise.models import BackgroundTask, TaskStatus

STATUS_COLOURS = {
    TaskStatus.PENDING: "info", TaskStatus.RUNNING: "primary", TaskStatus.COMPLETED: "success",
    TaskStatus.COMPLETED_WITH_ERRORS: "warning", TaskStatus.FAILED: "danger", TaskStatus.CANCELLED: "secondary",
    "pending": "info", "processing": "primary", "created": "success", "existing": "secondary", "failed": "danger",
    "cancelled": "secondary", "INFO": "info", "WARNING": "warning", "ERROR": "danger", "DEBUG": "light",
    "ok": "success", "warning": "warning", "error": "danger", "alive": "success", "stopping": "warning",
    "stopped": "secondary", "lost": "danger",
}
STATUS_LABELS = {
    TaskStatus.PENDING: "Waiting", TaskStatus.RUNNING: "Running", TaskStatus.COMPLETED: "Completed",
    TaskStatus.COMPLETED_WITH_ERRORS: "Completed with errors", TaskStatus.FAILED: "Failed",
    TaskStatus.CANCELLED: "Cancelled", "pending": "waiting", "processing": "in progress", "created": "created",
    "existing": "already existed", "failed": "failed", "cancelled": "cancelled",
}


def status_label(status: str | None) -> str:
    return STATUS_LABELS.get(status or "", (status or "").replace("_", " ").lower())


def status_badge(status: str | None) -> Markup:
    colour = STATUS_COLOURS.get(status or "", "light")
    return Markup('<span class="badge badge-{} status-badge" data-status="{}">{}</span>').format(
        colour, status or "", status_label(status))


def progress_bar(progress: float | None, status: str | None = None) -> Markup:
    pct = max(0.0, min(100.0, float(progress or 0.0)))
    colour = {TaskStatus.COMPLETED: "bg-success", TaskStatus.COMPLETED_WITH_ERRORS: "bg-warning",
              TaskStatus.FAILED: "bg-danger", TaskStatus.CANCELLED: "bg-secondary"}.get(status or "", "")
    striped = " progress-bar-striped progress-bar-animated" if status == TaskStatus.RUNNING else ""
    return Markup(
        '<div class="progress task-progress" title="{pct} %"><div class="progress-bar {colour}{striped}" '
        'role="progressbar" style="width:{pct}%" aria-valuenow="{pct}" aria-valuemin="0" aria-valuemax="100">'
        '{pct} %</div></div>').format(pct=f"{pct:.0f}", colour=colour, striped=striped)


def when(value: datetime | str | None) -> Markup:
    """A UTC time the page's script turns into the reader's local time (UTC shown without script)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return Markup("{}").format(value)
    if value is None:
        return Markup('<span class="text-muted">—</span>')
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return Markup('<time datetime="{}" data-local>{}</time>').format(
        value.isoformat(timespec="seconds"), value.strftime("%Y-%m-%d %H:%M UTC"))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# -- Flask-Admin column formatters (view, context, model, name) ------------------------------


def fmt_status(view: Any, context: Any, model: Any, name: str) -> Markup:
    return status_badge(getattr(model, name))


def fmt_progress(view: Any, context: Any, model: BackgroundTask, name: str) -> Markup:
    return progress_bar(model.progress, model.status)


def fmt_task_title(view: Any, context: Any, model: BackgroundTask, name: str) -> Markup:
    return Markup('<a href="{}">{}</a>').format(url_for("tasks.details_view", id=model.id), model.title)


def fmt_task_link(view: Any, context: Any, model: Any, name: str) -> Markup:
    return Markup('<a href="{}">#{}</a>').format(url_for("tasks.details_view", id=model.task_id), model.task_id)


def fmt_people(view: Any, context: Any, model: BackgroundTask, name: str) -> str:
    return f"{(model.user_type or '').title()}s"


def fmt_when(view: Any, context: Any, model: Any, name: str) -> Markup:
    return when(getattr(model, name))


def fmt_datetime_type(view: Any, value: datetime, name: str | None = None) -> Markup:
    return when(value)


def register_filters(app: Flask) -> None:
    """Make the helpers available to every template."""
    app.add_template_filter(status_badge, "status_badge")
    app.add_template_filter(status_label, "status_label")
    app.add_template_filter(progress_bar, "progress_bar")
    app.add_template_filter(when, "when")
    app.add_template_filter(duration, "duration")
