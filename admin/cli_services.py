"""``scholarise status``, ``scholarise restart`` and ``scholarise clock``: the background services from a shell.

They call ``actors.services`` / ``actors.clock``, the same functions the dashboard and ``/api/init`` use.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

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
    return f"[{STYLE[value]}]{value}[/]" if value in STYLE else value


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
    out.print(f"[bold]Mode:[/] {status['mode']}   [bold]Broker:[/] {status['broker']['kind']} "
              f"{_paint(status['broker']['status'])}   [bold]Database:[/] {_paint(status['database'].get('status'))} "
              f"{status['database'].get('message', '')}")
    processes = status.get("processes", [])
    table = Table("Process", "Roles", "State", "Started", "Last heartbeat", "Working on", title="Processes")
    for p in processes:
        table.add_row(p["id"], ", ".join(p["roles"]), _paint(p["state"]), _ago(p["started_at"], now),
                      _ago(p["last_seen"], now), p["current_batch"] or "")
    out.print(table if processes else "No process has registered yet.")
    scheduler = status.get("scheduler") or {}
    if scheduler:
        last = _ago(scheduler["last_scheduled_run"], now)
        out.print(f"[bold]Scheduler:[/] {_paint('alive' if scheduler['alive'] else 'error')} — probe every "
                  f"{scheduler['interval_seconds']:g} s, last scheduled run {last}, "
                  f"next due {scheduler['next_run_due']}")
    probe = status.get("last_probe")
    if probe:
        checks = Table("Check", "Status", "Message", title=f"Last probe #{probe['run_id']} ({probe['trigger']}, "
                       f"{_ago(probe['started_at'], now)}): {probe['status'] or 'running'}")
        for c in probe.get("checks", []):
            checks.add_row(c["name"], _paint(c["status"]), c["message"])
        out.print(checks)
    else:
        out.print("No health probe has run yet.")
    if "outbox" in status:
        out.print(f"[bold]Outbox:[/] {_paint(status['outbox']['status'])} {status['outbox']['message']}")
    if "tasks" in status:
        t = status["tasks"]
        out.print(f"[bold]Work:[/] {t['active_tasks']} active task(s), {t['pending_rows']} rows pending, "
                  f"{t['rows_in_progress']} in progress")


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


def register(group: click.Group) -> None:
    """Add status, restart and clock to the ``scholarise`` command group."""
    for command in (status_command, restart_command, clock_command):
        group.add_command(command)
