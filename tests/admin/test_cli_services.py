"""``scholarise status``, ``restart`` and ``clock``, run the way the engineer who deploys it runs them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from actors import heartbeat, runtime, services
from admin.cli import main
from scholarise.config import Settings
from scholarise.db import upgrade


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    for name in ("DATABASE_URL", "REDIS_URL", "CLERK_SECRET_KEY", "SCHOLARISE_BROKER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SCHOLARISE_INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.setattr(services, "_state", services._ProcessServices(os.getpid()))
    monkeypatch.setattr(heartbeat, "_current", None)
    upgrade(Settings(instance_path=tmp_path / "instance"))
    runner = CliRunner()
    yield lambda *args: runner.invoke(main, list(args), catch_exceptions=False)
    runtime.set_runtime(None)


def test_status_says_what_runs_and_that_no_probe_ran_yet(cli):
    result = cli("status")
    assert result.exit_code == 0, result.output
    assert "Mode: embedded" in result.stdout and "No health probe has run yet." in result.stdout


def test_restart_recovers_and_runs_a_probe_that_status_then_shows(cli):
    result = cli("restart", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert (answer["restarted"], answer["probe_requested"]) == (False, True)
    assert answer["recovery"]["released_rows"] == 0
    status = json.loads(cli("status", "--json").stdout)
    assert status["last_probe"]["trigger"] == "restart"
    assert {c["name"] for c in status["last_probe"]["checks"]} >= {"database", "broker", "workers", "recovery"}


def test_the_clock_command_explains_that_the_embedded_mode_needs_no_clock_process(cli):
    result = CliRunner().invoke(main, ["clock"])
    assert result.exit_code == 1
    assert "needs REDIS_URL" in result.output and "web process runs the scheduler" in result.output
