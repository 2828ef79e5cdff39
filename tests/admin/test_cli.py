"""The ``scholarise`` command line, run the way an administrator runs it."""

from __future__ import annotations

import csv
import io
import json
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
