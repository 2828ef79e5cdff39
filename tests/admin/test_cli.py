"""The ``scholarise`` command line, run the way an administrator runs it."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from actors import runtime
from admin.cli import main
from scholarise.config import Settings
from scholarise.db import make_engine, make_session_factory, session_scope, upgrade
from scholarise.models import BackgroundTask, TaskItem
from tests.conftest import DEMO


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name in ("DATABASE_URL", "REDIS_URL", "CLERK_SECRET_KEY", "CLERK_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCHOLARISE_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setenv("SCHOLARISE_BROKER", "embedded")
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    yield run
    runtime.set_runtime(None)


def counts(tmp_path: Path) -> tuple[int, int]:
    settings = Settings(instance_path=tmp_path / "instance")
    upgrade(settings)
    engine = make_engine(settings)
    with session_scope(make_session_factory(engine)) as session:
        result = (session.scalar(select(func.count()).select_from(BackgroundTask)),
                  session.scalar(select(func.count()).select_from(TaskItem)))
    engine.dispose()
    return result


def test_import_with_wait_and_json_prints_one_summary_object(cli):
    result = cli("import", str(DEMO / "teachers_with_errors.csv"), "--type", "teacher", "--branch", "North",
                 "--wait", "--json")
    summary = json.loads(result.stdout)
    assert result.exit_code == 2  # completed with errors
    assert (summary["status"], summary["total"], summary["created"], summary["existing"], summary["failed"]) == (
        "COMPLETED_WITH_ERRORS", 40, 36, 0, 4)
    assert [f["line"] for f in summary["failures"]] == [4, 8, 12, 20]
    assert "duplicate of line 6" in summary["failures"][2]["reason"]


def test_importing_the_same_file_twice_creates_nothing_the_second_time(cli):
    first = json.loads(cli("import", str(DEMO / "teachers.csv"), "--type", "teacher", "--branch", "Main",
                           "--wait", "--json").stdout)
    second = json.loads(cli("import", str(DEMO / "teachers.csv"), "--type", "teacher", "--branch", "Main",
                            "--wait", "--json").stdout)
    assert (first["created"], first["existing"]) == (200, 0)
    assert (second["created"], second["existing"], second["status"]) == (0, 200, "COMPLETED")


def test_results_command_writes_a_csv_with_one_row_per_line(cli, tmp_path):
    summary = json.loads(cli("import", str(DEMO / "teachers_with_errors.csv"), "--type", "teacher", "--branch", "N",
                             "--wait", "--json").stdout)
    out = tmp_path / "results.csv"
    result = cli("results", str(summary["task_id"]), "-o", str(out))
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert len(rows) == 40
    by_line = {r["line"]: r for r in rows}
    assert by_line["4"]["status"] == "failed" and "valid email" in by_line["4"]["error_message"]
    assert by_line["16"]["status"] == "created" and by_line["16"]["external_user_id"].startswith("user_")


def test_dry_run_reports_and_creates_nothing(cli, tmp_path):
    result = cli("import", str(DEMO / "teachers_with_errors.csv"), "--type", "teacher", "--branch", "N",
                 "--dry-run", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 2  # some rows would fail
    assert (report["total"], report["valid"], report["invalid"]) == (40, 36, 4)
    assert counts(tmp_path) == (0, 0)


def flat(text: str) -> str:
    """Console output with rich's line wrapping undone."""
    return " ".join(text.split())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty."),
        (b"first_name,last_name,email\r\n", "The file has a header but no data rows."),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(range(256)) * 4, "does not look like a CSV text file"),
        (b"first_name,last_name\nAda,Lovelace\n", "no email column"),
    ],
    ids=["empty", "header-only", "binary", "missing-column"],
)
def test_bad_files_get_a_clear_error_and_no_task(cli, tmp_path, content, message):
    path = _write(tmp_path / "bad.csv", content)
    result = cli("import", str(path), "--type", "teacher", "--branch", "Main", "--json")
    assert result.exit_code == 1
    assert message in json.loads(result.stdout)["error"]
    assert counts(tmp_path) == (0, 0)


def test_a_file_over_the_size_limit_is_refused_before_reading(cli, tmp_path):
    path = tmp_path / "huge.csv"
    with path.open("wb") as handle:
        handle.write(b"first_name,last_name,email\n")
        line = b"Ada,Lovelace,ada@example.org\n"
        handle.write(line * (50 * 1024 * 1024 // len(line) + 1))
    result = cli("import", str(path), "--type", "teacher", "--branch", "Main")
    assert result.exit_code == 1
    assert "the limit is 10.0 MB" in result.stderr
    assert counts(tmp_path) == (0, 0)


def test_a_bad_setting_fails_at_start_naming_the_variable(cli, monkeypatch):
    monkeypatch.setenv("SCHOLARISE_BATCH_SIZE", "lots")
    result = CliRunner().invoke(main, ["tasks"])
    assert result.exit_code == 1
    assert "SCHOLARISE_BATCH_SIZE must be a whole number" in result.output


def test_demo_imports_the_bundled_sample_end_to_end(cli):
    result = cli("demo", "--no-serve")
    assert result.exit_code == 0
    assert "200 created, 0 already existed, 0 failed, of 200 rows" in result.stderr


# -- what people type is shown as they typed it (never read as rich markup) ------------------------------------


MARKUP_CSV = b"first_name,last_name,email\nA,B,[/bold]bad\nE,F,ok1@example.org\nG,H,[red]x[/red]\n"


def test_square_brackets_in_emails_titles_and_file_names_are_printed_as_written(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCHOLARISE_ADMIN_EMAILS", "ops@example.org")  # the title is in the email's subject too
    path = _write(tmp_path / "m.csv", MARKUP_CSV)
    dry = cli("import", str(path), "--type", "teacher", "--branch", "M", "--dry-run")
    assert dry.exit_code == 2
    assert "'[/bold]bad' is not a valid email" in dry.stderr and "'[red]x[/red]' is not a valid email" in dry.stderr
    done = cli("import", str(path), "--type", "teacher", "--branch", "M", "--title", "[/b][red]x", "--wait")
    assert done.exit_code == 2 and "'[red]x[/red]' is not a valid email" in done.stderr
    listed = cli("tasks")
    assert listed.exit_code == 0 and "[/b][red]x" in listed.stdout
    outbox = cli("email", "outbox")
    assert outbox.exit_code == 0 and "[/b][red]x" in outbox.stdout
    missing = cli("import", "x[/a].csv", "--type", "teacher", "--branch", "M")
    assert missing.exit_code == 1 and "There is no file at x[/a].csv." in missing.stderr


def test_accounts_with_brackets_in_email_name_and_branch_are_created_and_listed_as_written(cli):
    created = cli("users", "create", "[red]x[/red]@e.org", "--role", "staff", "--branch", "[/bold]B",
                  "--name", "[/bold]", "--generate")
    assert created.exit_code == 0, created.output
    assert "Staff account [red]x[/red]@e.org of branch [/bold]B created." in created.stderr
    listed = cli("users", "list")
    assert listed.exit_code == 0
    row = next(line for line in listed.stdout.splitlines() if "@e.org" in line)
    assert [cell.strip() for cell in row.split("│")[1:5]] == ["[red]x[/red]@e.org", "[/bold]", "staff",
                                                              "[/bold]B"]
    disabled = cli("users", "disable", "[red]x[/red]@e.org")
    assert disabled.exit_code == 0 and "[red]x[/red]@e.org is disabled." in disabled.stderr


def test_the_decoded_names_preview_shows_brackets_as_written(cli, tmp_path):
    path = _write(tmp_path / "ansi.csv", "first_name,last_name,email\nJosé,M[/x]uñoz,j@example.org\n"
                  "François,Müller,f@example.org\n".encode("cp1252"))
    result = cli("import", str(path), "--type", "teacher", "--branch", "M", "--dry-run")
    assert result.exit_code == 0
    assert "Decoded names: José M[/x]uñoz; François Müller" in result.stderr


# -- services that do not answer -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["postgresql://u:secretpw@127.0.0.1:1/db", "sqlite:////nonexistent/dir/x.db"])
@pytest.mark.parametrize("command", [["tasks"], ["upgrade"], ["users", "list"], ["email", "outbox"], ["cancel", "1"]])
def test_a_database_that_cannot_be_used_is_one_clear_error_without_the_password(cli, monkeypatch, url, command):
    monkeypatch.setenv("DATABASE_URL", url)
    result = cli(*command)
    assert result.exit_code == 1
    assert f"The database at DATABASE_URL={url.replace('secretpw', '***')} cannot be used: " in result.output
    assert "secretpw" not in result.output


def test_status_with_an_unreachable_database_reports_work_unknown_and_exits_1(cli, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secretpw@127.0.0.1:1/db")
    result = cli("status")
    assert result.exit_code == 1
    assert "Work: unknown" in result.stdout and "Database: error" in result.stdout
    assert "secretpw" not in result.output


def test_an_unreachable_broker_stops_the_import_before_anything_is_stored(cli, tmp_path, monkeypatch):
    monkeypatch.delenv("SCHOLARISE_BROKER")
    monkeypatch.setenv("REDIS_URL", "redis://:secretpw@127.0.0.1:1/0")
    result = cli("import", str(DEMO / "teachers.csv"), "--type", "teacher", "--branch", "ENV")
    assert result.exit_code == 1
    assert "The broker at REDIS_URL=redis://:***@127.0.0.1:1/0 does not answer" in result.stderr
    assert "Nothing was created" in result.stderr and "secretpw" not in result.output
    assert counts(tmp_path) == (0, 0)


def test_a_task_stored_while_the_broker_refuses_work_says_so_and_resume_queues_it(cli, tmp_path, monkeypatch):
    import uuid
    from urllib.parse import urlsplit

    import redis

    from tests.support import services

    url = services.require("redis", services.redis_url())
    admin_client, user = redis.Redis.from_url(url), f"ping-only-{uuid.uuid4().hex[:8]}"
    admin_client.acl_setuser(user, enabled=True, passwords=["+pingpw123"], commands=["+ping"], keys=["~*"])
    parts = urlsplit(url)
    monkeypatch.delenv("SCHOLARISE_BROKER")
    monkeypatch.setenv("REDIS_URL", f"redis://{user}:pingpw123@{parts.hostname}:{parts.port}{parts.path}")
    try:  # the broker answers PING (the check passes) but refuses to enqueue: the task is stored, not queued
        result = cli("import", str(DEMO / "teachers.csv"), "--type", "teacher", "--branch", "R", "--json")
        answer = json.loads(result.stdout)
        assert result.exit_code == 1 and answer["status"] == "PENDING"
        assert answer["error"].startswith(f"Task #{answer['task_id']} is stored but could not be queued (NoPermission")
        assert answer["error"].endswith("(the health probe re-queues waiting work) or with "
                                        f"`scholarise resume {answer['task_id']}`.")
        assert counts(tmp_path) == (1, 200)
        monkeypatch.setenv("REDIS_URL", url)
        resumed = cli("resume", str(answer["task_id"]))
        assert resumed.exit_code == 0, resumed.output
    finally:
        admin_client.acl_deluser(user)
        services.flush_redis(url)
        admin_client.close()


def test_a_utf16_encoding_for_a_file_without_byte_order_mark_is_a_clear_error(cli, tmp_path):
    path = _write(tmp_path / "ansi.csv", "first_name,last_name,email\nJosé,Muñoz,j@example.org\n".encode("cp1252"))
    result = cli("import", str(path), "--type", "teacher", "--branch", "E", "--encoding", "utf-16", "--dry-run")
    assert result.exit_code == 1
    assert "The file cannot be read as utf-16: it does not start with the byte-order mark" in flat(result.stderr)


# -- small things ----------------------------------------------------------------------------------------------


def test_results_to_a_folder_that_does_not_exist_is_a_clear_error(cli):
    summary = json.loads(cli("import", str(DEMO / "teachers.csv"), "--type", "teacher", "--branch", "N", "--wait",
                             "--json").stdout)
    result = cli("results", str(summary["task_id"]), "-o", "/nonexistent/x.csv")
    assert result.exit_code == 1
    assert "Cannot write /nonexistent/x.csv: No such file or directory." in result.output


def test_a_blank_branch_is_refused_by_the_dry_run_as_by_the_import(cli, tmp_path):
    dry = cli("import", str(DEMO / "teachers.csv"), "--type", "teacher", "--branch", "   ", "--dry-run")
    real = cli("import", str(DEMO / "teachers.csv"), "--type", "teacher", "--branch", "   ")
    assert dry.exit_code == real.exit_code == 1
    assert "A branch name is required" in dry.stderr and dry.stderr == real.stderr
    assert counts(tmp_path) == (0, 0)


def test_retry_help_says_which_rows_it_queues_again(cli):
    text = " ".join(cli("retry", "--help").output.split())
    assert "failed rows that can succeed" in text and "cancelled rows" in text
    assert "Rows that failed validation are not retried" in text


def test_links_in_emails_point_at_the_port_the_demo_serves_on(cli, tmp_path, monkeypatch):
    from scholarise.models import EmailNotification

    monkeypatch.setenv("SCHOLARISE_ADMIN_EMAILS", "ops@example.org")
    result = cli("demo", "--no-serve", "--port", "5891")
    assert result.exit_code == 0 and "Sign in at http://127.0.0.1:5891/login" in result.stderr
    settings = Settings(instance_path=tmp_path / "instance")
    engine = make_engine(settings)
    with session_scope(make_session_factory(engine)) as session:
        bodies = list(session.scalars(select(EmailNotification.body_text)))
    engine.dispose()
    assert len(bodies) == 1 and "http://127.0.0.1:5891/" in bodies[0] and ":5000" not in bodies[0]


def test_a_public_url_that_is_set_wins_over_host_and_port():
    from admin.cli_services import _served_at

    assert _served_at(Settings(), "0.0.0.0", 8080).public_url == "http://127.0.0.1:8080"
    assert _served_at(Settings(), "::", 8080).public_url == "http://[::1]:8080"
    chosen = Settings(public_url="https://school.example")
    assert _served_at(chosen, "127.0.0.1", 8080).public_url == "https://school.example"


# -- signals: real processes -----------------------------------------------------------------------------------


def _slow_env(tmp_path: Path) -> dict[str, str]:
    """One worker thread, provider calls paced at 10 a second: a batch of 10 rows takes a second or two.

    ``serve`` starts its workers half a second after the server, so a batch in progress means it is serving.
    """
    from tests.support.workers import worker_env

    return worker_env(SCHOLARISE_INSTANCE_PATH=str(tmp_path / "instance"), SCHOLARISE_BROKER="embedded",
                      SCHOLARISE_PROVIDER_RATE_LIMIT="10", SCHOLARISE_PROVIDER_RATE_WINDOW="1",
                      SCHOLARISE_WORKER_THREADS="1", SCHOLARISE_STARTUP_DELAY="0.5",
                      SCHOLARISE_HEARTBEAT_INTERVAL="0.5")


def _statuses(tmp_path: Path) -> dict[str, int]:
    """Rows per status ({} while the process has not made its database yet)."""
    from sqlalchemy.exc import OperationalError

    engine = make_engine(Settings(instance_path=tmp_path / "instance"))
    try:
        with session_scope(make_session_factory(engine)) as session:
            return dict(session.execute(select(TaskItem.status, func.count()).group_by(TaskItem.status)).all())
    except OperationalError:
        return {}
    finally:
        engine.dispose()


def _scholarise(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    script = Path(sys.executable).with_name("scholarise")
    with log.open("wb") as out:
        return subprocess.Popen([str(script), *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _signal_when(proc, sig, ready, what: str) -> int:  # noqa: ANN001
    """Send ``sig`` once ``ready()`` holds; the exit code (the process is killed if it outlives 15 s)."""
    from tests.support.cluster import wait_until

    try:
        wait_until(ready, timeout=30, interval=0.05, what=what)
        proc.send_signal(sig)
        return proc.wait(15)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_sigterm_stops_serve_gracefully_like_ctrl_c(tmp_path):
    from scholarise.models import WorkerHeartbeat
    from tests.support.cluster import free_port, write_people_csv

    env = _slow_env(tmp_path)
    people = write_people_csv(tmp_path / "people.csv", 60)
    imported = subprocess.run([str(Path(sys.executable).with_name("scholarise")), "import", str(people), "--type",
                               "teacher", "--branch", "S"], env=env, capture_output=True, check=False)
    assert imported.returncode == 0, imported.stderr
    proc = _scholarise(env, "serve", "--port", str(free_port()), log=tmp_path / "serve.log")
    code = _signal_when(proc, signal.SIGTERM, lambda: _statuses(tmp_path).get("processing", 0) > 0,
                        "a batch in progress")
    assert code == 0, (tmp_path / "serve.log").read_text()
    statuses = _statuses(tmp_path)
    assert "processing" not in statuses and statuses.get("created", 0) >= 10
    engine = make_engine(Settings(instance_path=tmp_path / "instance"))
    with session_scope(make_session_factory(engine)) as session:
        beat = session.scalar(select(WorkerHeartbeat).where(WorkerHeartbeat.pid == proc.pid))
        assert beat is not None and beat.stopped_at is not None  # said goodbye: not shown as lost
    engine.dispose()


def test_ctrl_c_while_following_an_import_says_what_happens_to_the_task(tmp_path):
    from tests.support.cluster import write_people_csv

    people = write_people_csv(tmp_path / "people.csv", 60)
    log = tmp_path / "import.log"
    proc = _scholarise(_slow_env(tmp_path), "import", str(people), "--type", "teacher", "--branch", "S", "--wait",
                       log=log)
    code = _signal_when(proc, signal.SIGINT, lambda: _statuses(tmp_path).get("created", 0) > 0,
                        "the import to start")
    text = flat(log.read_text())
    assert code == 130, text
    assert "Stopped following task #1; the task resumes with the next `scholarise serve`" in text
    assert "`scholarise tasks`" in text and "`scholarise cancel 1`" in text
    assert "processing" not in _statuses(tmp_path)


def test_following_an_import_with_no_live_worker_says_to_start_one(tmp_path):
    import time

    from tests.support import services
    from tests.support.workers import worker_env

    url = services.require("redis", services.redis_url())
    env = worker_env(SCHOLARISE_INSTANCE_PATH=str(tmp_path / "instance"), REDIS_URL=url)
    log = tmp_path / "import.log"
    proc = _scholarise(env, "import", str(DEMO / "teachers.csv"), "--type", "teacher", "--branch", "W", "--wait",
                       log=log)
    try:
        code = _signal_when(proc, signal.SIGINT, lambda: counts(tmp_path)[0] == 1 and time.sleep(1.5) is None,
                            "the task to be stored and followed")
    finally:
        services.flush_redis(url)
    text = flat(log.read_text())
    assert code == 130, text
    assert "No live worker process: the task waits until one starts (scholarise worker, or honcho start)." in text
    assert "keeps running in the workers" in text
