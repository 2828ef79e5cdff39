"""The ``scholarise`` command line: import files, follow tasks, run the processes.

Commands call ``actors`` and ``scholarise`` services; none contains a business rule.
Exit codes: 0 success, 1 bad input, a failed task or a service (database, broker) that does not
answer, 2 a task that completed with errors (or, with --dry-run, a file with rows that would fail),
130 stopped following a task with Ctrl+C (the task goes on).

Everything printed through rich that comes from a person, a file or the database is escaped
(``escape``), so square brackets in a name, an email or a title are shown as written.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from admin.cli_errors import CommandGroup
from admin.cli_errors import safe_url as _safe_url
from scholarise.config import Settings
from scholarise.errors import ScholariseError
from scholarise.models.tasks import TaskStatus
from scholarise.tasks import status_words

err = Console(stderr=True)
out = Console()
# Short enough for an 80-column terminal, where rich would cut COMPLETED_WITH_ERRORS to "COMPLET…".
STATUS_WORDS = {**{s: status_words(s) for s in TaskStatus.ALL}, TaskStatus.PENDING: "waiting",
                TaskStatus.COMPLETED_WITH_ERRORS: "with errors"}
EXIT_CODES = {"COMPLETED": 0, "COMPLETED_WITH_ERRORS": 2}


def load_settings(**overrides: Any) -> Settings:
    try:
        settings = Settings.from_env()
    except ScholariseError as exc:
        raise click.ClickException(str(exc)) from None
    return settings.replace(**{k: v for k, v in overrides.items() if v is not None})


def prepare(settings: Settings) -> None:
    """Upgrade the schema and configure the actors for this process."""
    import actors
    from scholarise.db import upgrade

    upgrade(settings)
    actors.configure(settings)


@click.group(cls=CommandGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log what the services do.")
def main(verbose: bool) -> None:
    """Scholarise background services: bulk imports, notifications, health."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command("upgrade")
def upgrade_command() -> None:
    """Create or upgrade the database schema (idempotent)."""
    from scholarise.db import upgrade

    settings = load_settings()
    upgrade(settings)
    err.print(f"Database is up to date ({escape(_safe_url(settings.database_url))}).")


main.add_command(upgrade_command, "init-db")


@main.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--type", "user_type", required=True, type=click.Choice(["teacher", "employee", "student"]))
@click.option("--branch", required=True, help="Branch (campus) name; created if new.")
@click.option("--priority", default=5, show_default=True, type=click.IntRange(1, 10), help="1 runs first.")
@click.option("--batch-size", type=click.IntRange(1, 500), help="Rows per batch (default from settings).")
@click.option("--encoding", help="The file's encoding, when it is not UTF-8/UTF-16 (e.g. cp1252).")
@click.option("--title", help="Task title (default: the file name).")
@click.option("--dry-run", is_flag=True, help="Validate and report; create nothing.")
@click.option("--wait", is_flag=True, help="Follow the task with a progress bar until it ends.")
@click.option("--json", "as_json", is_flag=True, help="Print the final summary as one JSON object.")
def import_command(file: Path, user_type: str, branch: str, priority: int, batch_size: int | None,
                   encoding: str | None, title: str | None, dry_run: bool, wait: bool, as_json: bool) -> None:
    """Validate FILE and import its rows as a background task."""
    from scholarise.csvfile import open_csv
    from scholarise.tasks import build_report

    settings = load_settings()
    if not file.is_file():
        _fail(f"There is no file at {file}.", as_json)
    try:
        with open_csv(file, user_type, encoding=encoding, max_bytes=settings.max_upload_bytes,
                      max_rows=settings.max_rows) as csv_file:
            _report_encoding(csv_file)
            if dry_run:
                _check_branch(settings, branch)  # the real import's rule, so both reject the same names
                report = build_report(csv_file)
                report.encoding, report.encoding_source = csv_file.encoding, csv_file.encoding_source
                _print_report(report, as_json)
                sys.exit(2 if report.invalid else 0)  # like --wait: 2 means some rows would fail
            _require_broker(settings, as_json)
            prepare(settings)
            import actors
            from actors.imports import NotQueuedError

            payload = {"user_type": user_type, "branch": branch, "priority": priority, "batch_size": batch_size,
                       "source": file.name, "encoding": csv_file.encoding,
                       "encoding_source": csv_file.encoding_source}
            try:
                task_id = actors.create_bulk_task("BULK_USER_CREATION", title or f"Import {file.name}",
                                                  f"{user_type.title()}s from {file.name}", payload,
                                                  created_by="cli", rows=csv_file)
            except NotQueuedError as exc:  # stored, so not lost: recovery rings for it
                _fail(f"{exc} or with `scholarise resume {exc.task_id}`.", as_json,
                      task_id=exc.task_id, status="PENDING")
    except ScholariseError as exc:
        _fail(str(exc), as_json)
    err.print(f"Task #{task_id} created.")
    if not wait:
        if settings.broker == "embedded":
            err.print("A running [bold]scholarise serve[/] (or make run) starts it within a few seconds; "
                      "otherwise it starts with the next serve, or use --wait.")
        _finish(task_id, as_json, wait=False)
        return
    worker = None
    if settings.broker == "embedded":
        from actors.embedded import start_worker

        worker = start_worker()
    try:
        _follow(task_id, quiet=as_json)
    except KeyboardInterrupt:
        if worker is not None:
            err.print("Stopping this command's workers; the batch in progress finishes first …")
            worker.stop()
            worker = None
        where = ("resumes with the next `scholarise serve` (a running one picks it up within seconds)"
                 if settings.broker == "embedded" else "keeps running in the workers")
        err.print(f"Stopped following task #{task_id}; the task {where}. Follow it with `scholarise tasks`; "
                  f"stop it with `scholarise cancel {task_id}`.", highlight=False)
        sys.exit(130)
    finally:
        if worker is not None:
            worker.stop()
    _finish(task_id, as_json, wait=True)


def _check_branch(settings: Settings, branch: str) -> None:
    """The task service's branch rule (InputError), in a transaction that is rolled back: a dry run creates nothing."""
    from scholarise.db import make_engine, make_session_factory, upgrade
    from scholarise.tasks import get_or_create_branch

    upgrade(settings)
    engine = make_engine(settings)
    try:
        with make_session_factory(engine)() as session:
            get_or_create_branch(session, branch)
            session.rollback()
    finally:
        engine.dispose()


def _require_broker(settings: Settings, as_json: bool) -> None:
    """Stop before anything is stored when the Redis broker does not answer (the in-process one always does)."""
    from actors.health import broker_ping

    ping = broker_ping(settings)
    if ping is None:
        return
    try:
        ping()
    except Exception as exc:  # noqa: BLE001 - any failure to answer is the finding
        _fail(f"The broker at REDIS_URL={_safe_url(settings.redis_url or '')} does not answer "
              f"({type(exc).__name__}: {exc}). Nothing was created; start Redis or correct REDIS_URL, then run the "
              "import again.", as_json)


def _report_encoding(csv_file: Any) -> None:
    if csv_file.encoding_source != "detected":
        return
    names = [f"{r.data.get('first_name', '')} {r.data.get('last_name', '')}".strip() for r in csv_file.preview(5)]
    err.print(f"[yellow]The file is not UTF-8; its encoding was detected as {escape(csv_file.encoding)}.[/]")
    err.print("Decoded names: " + escape("; ".join(names)))
    err.print("If these look wrong, stop now and run again with --encoding NAME (for example cp1252).")


def _print_report(report: Any, as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps({"dry_run": True, **report.to_dict()}, default=str))
        return
    err.print(f"{report.total} rows: {report.valid} valid, {len(report.invalid)} with errors. Nothing was created.")
    _error_table([(r.line, "; ".join(r.errors)) for r in report.invalid])


def _error_table(rows: list[tuple[int, str]], limit: int = 50) -> None:
    if not rows:
        return
    table = Table("Line", "Problem", title="Rows that cannot be imported")
    for line, reason in rows[:limit]:
        table.add_row(str(line), escape(reason))
    err.print(table)
    if len(rows) > limit:
        err.print(f"… and {len(rows) - limit} more (see the results CSV).")


def _follow(task_id: int, *, quiet: bool) -> None:
    import actors

    columns = (TextColumn("[bold]#{task.fields[tid]}[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[counts]}"), TimeElapsedColumn())
    with Progress(*columns, console=err, disable=quiet, transient=False) as progress:
        bar = progress.add_task("starting", total=None, tid=task_id, counts="")
        workers, checked, warned = 1, 0.0, False
        while True:
            summary = actors.get_task(task_id)
            if time.monotonic() - checked > 5:  # a deployment whose workers are all down says so, not just waits
                workers, checked = actors.live_worker_count(), time.monotonic()
                if not workers and not warned:
                    progress.console.print("No live worker process: the task waits until one starts "
                                           "(scholarise worker, or honcho start).")
                warned = warned or not workers
            waiting = "" if workers else " · waiting for a worker"
            progress.update(bar, total=summary["total"], completed=summary["processed"],
                            description=status_words(summary["status"]),
                            counts=f"{summary['created']} created · {summary['existing']} existed · "
                                   f"{summary['failed']} failed{waiting}")
            if summary["status"] in ("COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"):
                return
            time.sleep(0.25)


def _finish(task_id: int, as_json: bool, *, wait: bool) -> None:
    import actors

    summary = actors.get_task(task_id)
    if as_json:
        out.print_json(json.dumps(summary, default=str))
    else:
        err.print(f"Task #{task_id}: {summary['status']} — {counts_sentence(summary)}")
        _error_table([(f["line"], f["reason"] or "") for f in summary["failures"]])
        err.print(f"Per-row results: scholarise results {task_id} -o results-{task_id}.csv")
    if wait:
        sys.exit(EXIT_CODES.get(summary["status"], 1))


def counts_sentence(summary: dict[str, Any]) -> str:
    """"200 created, 0 already existed, 0 failed, of 200 rows." (cancelled rows named when there are some)."""
    cancelled = f", {summary['cancelled']} cancelled" if summary.get("cancelled") else ""
    return (f"{summary['created']} created, {summary['existing']} already existed, {summary['failed']} failed"
            f"{cancelled}, of {summary['total']} rows.")


def _fail(message: str, as_json: bool, **details: Any) -> None:
    if as_json:
        out.print_json(json.dumps({"error": message, **details}))
    else:
        err.print(f"[red]Error:[/] {escape(message)}")
    sys.exit(1)


@main.command("results")
@click.argument("task_id", type=int)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default stdout).")
def results_command(task_id: int, output: Path | None) -> None:
    """Write a task's per-row results as CSV (cells are made safe for spreadsheets)."""
    from scholarise.db import make_engine, make_session_factory, session_scope
    from scholarise.results import write_results_csv
    from scholarise.tasks import get_task

    settings = load_settings()
    factory = make_session_factory(make_engine(settings))
    with session_scope(factory) as session:
        try:
            get_task(session, task_id)
        except ScholariseError as exc:
            raise click.ClickException(str(exc)) from None
        if output is None:
            write_results_csv(session, task_id, sys.stdout)
            return
        try:
            stream = output.open("w", newline="", encoding="utf-8-sig")
        except OSError as exc:
            raise click.ClickException(f"Cannot write {output}: {exc.strerror or exc}.") from None
        with stream:
            count = write_results_csv(session, task_id, stream)
    err.print(f"{count} rows written to {escape(str(output))}.")


@main.command("tasks")
@click.option("--status", type=click.Choice(["PENDING", "RUNNING", "COMPLETED", "COMPLETED_WITH_ERRORS", "FAILED",
                                             "CANCELLED"]))
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True)
def tasks_command(status: str | None, limit: int, as_json: bool) -> None:
    """List recent tasks."""
    import actors

    settings = load_settings()
    prepare(settings)
    rows = actors.get_all_tasks(status=status, limit=limit)
    if as_json:
        out.print_json(json.dumps(rows, default=str))
        return
    table = Table("Id", "Title", "Status", "Progress", "Created", "Existed", "Failed")
    for t in rows:
        cancelled = f" ({t['cancelled']} stopped)" if t.get("cancelled") else ""
        table.add_row(str(t["task_id"]), escape(t["title"]), STATUS_WORDS.get(t["status"], t["status"]) + cancelled,
                      f"{t['progress']:.0f} %", str(t["created"]), str(t["existing"]), str(t["failed"]))
    out.print(table)


@main.command("cancel")
@click.argument("task_id", type=int)
def cancel_command(task_id: int) -> None:
    """Cancel a pending or running task (the batch in progress finishes)."""
    _task_action(lambda a: a.cancel_task(task_id, by="cli"), f"Task #{task_id} cancelled.")


@main.command("retry")
@click.argument("task_id", type=int)
def retry_command(task_id: int) -> None:
    """Queue a finished task's rows again: failed rows that can succeed (provider errors) and cancelled rows.

    Rows that failed validation are not retried: they would fail again; fix the file and import it again.
    """
    _task_action(lambda a: a.retry_failed_rows(task_id, by="cli"), "{} rows queued again.")


@main.command("resume")
@click.argument("task_id", type=int)
def resume_command(task_id: int) -> None:
    """Release rows held by a worker that stopped, so a running worker takes them again."""
    _task_action(lambda a: a.resume_task(task_id), "{} rows released; workers will resume the task.")


def _task_action(action: Any, message: str) -> None:
    import actors
    from actors.imports import NotQueuedError

    prepare(load_settings())
    try:
        result = action(actors)
    except NotQueuedError as exc:  # the change is stored; only the doorbell is missing
        raise click.ClickException(f"{exc} or with `scholarise resume {exc.task_id}`.") from None
    except ScholariseError as exc:
        raise click.ClickException(str(exc)) from None
    err.print(escape(message.format(result)))


from admin.cli_tokens import register as register_token_commands  # noqa: E402

register_token_commands(main)  # create-token, revoke-token, tokens

from admin.cli_services import register as register_service_commands  # noqa: E402

register_service_commands(main)  # status, restart, clock, serve, worker, demo

from admin.cli_users import register as register_user_commands  # noqa: E402

register_user_commands(main)  # create-admin, users create|list|set-password|disable|enable

from admin.cli_email import email_group  # noqa: E402

main.add_command(email_group)  # email show|set|test|send-test|outbox|resend|rotate-key


if __name__ == "__main__":  # pragma: no cover
    main()
