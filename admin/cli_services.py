"""The processes and background services from a shell: ``status``, ``restart``, ``clock``, ``serve``,
``worker`` and ``demo``.

They call ``actors.services`` / ``actors.clock``, the same functions the dashboard and ``/api/init`` use.
What comes from the database (process ids, probe messages) is escaped before rich prints it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from scholarise.config import PROJECT_ROOT, Settings
from scholarise.errors import ScholariseError

out = Console()
err = Console(stderr=True)
STYLE = {"ok": "green", "alive": "green", "warning": "yellow", "stopping": "yellow", "error": "red", "lost": "red",
         "stopped": "dim"}


def _settings() -> Any:
    from admin.cli import load_settings

    return load_settings()


def _paint(value: str | None) -> str:
    value = value or "-"
    return f"[{STYLE[value]}]{value}[/]" if value in STYLE else escape(value)


def _ago(iso: str | None, now: datetime) -> str:
    if not iso:
        return "-"
    seconds = max(0.0, (now - datetime.fromisoformat(iso)).total_seconds())
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
def status_command(as_json: bool) -> None:
    """What runs (web, workers, clock), since when, and the last health probe results.

    Exits with 1 when the database or the broker does not answer.
    """
    from actors.services import get_service_status

    try:
        status = get_service_status(settings=_settings())
    except ScholariseError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        out.print_json(json.dumps(status, default=str))
    else:
        _print_status(status)
    if status["database"].get("status") == "error" or status["broker"].get("status") == "error":
        sys.exit(1)


def _print_status(status: dict[str, Any]) -> None:
    now = datetime.fromisoformat(status["checked_at"])
    database = status["database"]
    out.print(f"[bold]Mode:[/] {status['mode']}   [bold]Broker:[/] {status['broker']['kind']} "
              f"{_paint(status['broker']['status'])}   [bold]Database:[/] {_paint(database.get('status'))} "
              f"{escape(database.get('message', ''))}")
    if status["broker"].get("status") == "error":
        out.print(escape(status["broker"].get("message", "")))
    processes = status.get("processes", [])
    table = Table("Process", "Roles", "State", "Started", "Last heartbeat", "Working on", title="Processes")
    for p in processes:
        table.add_row(escape(p["id"]), escape(", ".join(p["roles"])), _paint(p["state"]), _ago(p["started_at"], now),
                      _ago(p["last_seen"], now), escape(p["current_batch"] or ""))
    out.print(table if processes else "No process has registered yet.")
    scheduler = status.get("scheduler") or {}
    if scheduler:
        last = _ago(scheduler["last_scheduled_run"], now)
        out.print(f"[bold]Scheduler:[/] {_paint('alive' if scheduler['alive'] else 'error')} — probe every "
                  f"{scheduler['interval_seconds']:g} s, last scheduled run {last}, "
                  f"next due {escape(str(scheduler['next_run_due']))}")
    probe = status.get("last_probe")
    if probe:
        checks = Table("Check", "Status", "Message", title=escape(
            f"Last probe #{probe['run_id']} ({probe['trigger']}, {_ago(probe['started_at'], now)}): "
            f"{probe['status'] or 'running'}"))
        for c in probe.get("checks", []):
            checks.add_row(escape(c["name"]), _paint(c["status"]), escape(c["message"] or ""))
        out.print(checks)
    else:
        out.print("No health probe has run yet.")
    if "outbox" in status:
        out.print(f"[bold]Outbox:[/] {_paint(status['outbox']['status'])} {escape(status['outbox']['message'])}")
    t = status.get("tasks") or {}
    if "active_tasks" in t:
        out.print(f"[bold]Work:[/] {t['active_tasks']} active task(s), {t['pending_rows']} rows pending, "
                  f"{t['rows_in_progress']} in progress")
    else:  # the database did not answer: say so rather than guess
        out.print("[bold]Work:[/] unknown (the database could not be read)")


@click.command("restart")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as one JSON object.")
def restart_command(as_json: bool) -> None:
    """Recover work across the cluster now (rows of lost workers, stalled tasks) and queue a health probe."""
    from actors.services import restart_services

    try:
        result = restart_services(settings=_settings())
    except ScholariseError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        out.print_json(json.dumps(result, default=str))
        return
    report = result["recovery"]
    err.print(f"Recovery: {report['released_rows']} rows handed back from "
              f"{len(report['lost_workers']) + len(report['reused_ids'])} lost worker(s); "
              f"tasks rung again: {', '.join(f'#{t}' for t in report['ring']) or 'none'}.")
    err.print("Health probe requested." if result["probe_requested"] else "[yellow]Could not run a health probe.[/]")


@click.command("clock")
def clock_command() -> None:
    """Run the scheduler (health probes and recovery) in the foreground: the Procfile's clock process."""
    from actors.clock import run

    logging.getLogger().setLevel(logging.INFO)
    try:
        run(_settings())
    except ScholariseError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("worker")
@click.option("--processes", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--shutdown-timeout", default=25_000, show_default=True, type=click.IntRange(100, 3_600_000),
              help="Milliseconds a running batch may take to finish on SIGTERM before it is handed back.")
def worker_command(processes: int, threads: int, shutdown_timeout: int) -> None:
    """Run Dramatiq worker processes on Redis (needs REDIS_URL), restarted if one of them dies."""
    from actors.supervisor import supervise

    settings = _settings()
    if settings.broker != "redis":
        raise click.ClickException("scholarise worker needs REDIS_URL; in the embedded mode `scholarise serve` "
                                   "runs the workers inside the web process.")
    from scholarise.db import upgrade

    upgrade(settings)
    sys.exit(supervise([sys.executable, "-m", "dramatiq", "actors.worker", "--processes", str(processes),
                        "--threads", str(threads), "--worker-shutdown-timeout", str(shutdown_timeout)]))


def _served_at(settings: Settings, host: str, port: int) -> Settings:
    """Links in emails point at this server unless SCHOLARISE_PUBLIC_URL says otherwise (a proxy, a domain).

    The setting has no "unset" marker, so its default value counts as not set.
    """
    default = next(f.default for f in dataclasses.fields(Settings) if f.name == "public_url")
    if settings.public_url != default:
        return settings
    shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
    return settings.replace(public_url=f"http://{shown}:{port}")


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl+C so waitress ends its loop and the serve path stops the services gracefully."""


def _serve(settings: Settings, host: str, port: int, worker: Any = None) -> None:
    """Serve until Ctrl+C or SIGTERM; either one stops gracefully (the batch in progress finishes or is handed
    back, the heartbeat says stopped). A second SIGTERM during that stop is ignored; SIGKILL still ends it."""
    from actors import services
    from actors.startup import wait_for_startup
    from admin.server import serve

    received: list[int] = []

    def on_sigterm(signum: int, frame: Any) -> None:
        if received:
            logging.getLogger(__name__).info("already stopping; ignoring another SIGTERM")
            return
        received.append(signum)
        raise _Terminated

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        serve(settings, host=host, port=port, worker=worker)
    except _Terminated:  # it came while the server was starting, before waitress's loop could take it
        wait_for_startup()
        services.shutdown()  # idempotent: also right when the server's own stop already ran


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
def serve_command(host: str, port: int) -> None:
    """Serve the admin site (and, in the embedded mode, the workers) in one process; SIGTERM or Ctrl+C stops it."""
    from admin.cli import prepare

    settings = _served_at(_settings(), host, port)
    prepare(settings)
    _serve(settings, host, port)


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-serve", is_flag=True, help="Import the sample file and stop.")
def demo_command(host: str, port: int, no_serve: bool) -> None:
    """The main job: import the bundled sample of 200 teachers end to end, then serve the admin site."""
    import actors
    from actors.embedded import start_worker
    from admin.cli import _follow, counts_sentence, prepare
    from admin.cli_errors import safe_url
    from scholarise.csvfile import open_csv

    settings = _served_at(_settings(), host, port)
    prepare(settings)
    sample = PROJECT_ROOT / "demo" / "teachers.csv"
    err.print(escape(f"Importing {sample.relative_to(PROJECT_ROOT)} into branch 'Main Campus' "
                     f"(provider: {settings.provider_name}, broker: {settings.broker}, database: "
                     f"{safe_url(settings.database_url)})"))
    with open_csv(sample, "teacher", max_bytes=settings.max_upload_bytes, max_rows=settings.max_rows) as csv_file:
        task_id = actors.create_bulk_task("BULK_USER_CREATION", "Demo: import sample teachers",
                                          "The bundled sample of 200 teachers",
                                          {"user_type": "teacher", "branch": "Main Campus", "source": sample.name},
                                          created_by="make run", rows=csv_file)
    worker = start_worker()
    _follow(task_id, quiet=False)
    summary = actors.get_task(task_id)
    err.print(f"[bold]Task #{task_id}: {summary['status']}[/] — {counts_sentence(summary)}")
    err.print(f"Results CSV: scholarise results {task_id} -o results.csv")
    from admin.cli_users import announce_sign_in

    announce_sign_in(settings, settings.public_url.rstrip("/"))  # the first admin if none; password printed once
    if no_serve:
        worker.stop()
        return
    _serve(settings, host, port, worker)


def register(group: click.Group) -> None:
    """Add the service and process commands to the ``scholarise`` command group."""
    for command in (status_command, restart_command, clock_command, serve_command, worker_command, demo_command):
        group.add_command(command)
