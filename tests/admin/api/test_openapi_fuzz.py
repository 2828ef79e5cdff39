"""Schemathesis fuzzes the served OpenAPI description against the app itself (WSGI, no network).

Every operation gets a bounded number of generated requests (valid and invalid ones), authenticated
with an admin token; Schemathesis' checks then demand that no answer is a server error, that each
matches the description (status code, content type, headers, body schema), that invalid input is
refused, and more. SMTP checks in the fuzzed email endpoints may only reach loopback.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from scholarise.config import Settings
from scholarise.db import upgrade
from tests.admin.api.conftest import Tokens, bearer
from tests.support import services

# Every default check, except that a schema-valid body must be accepted: the description cannot say that an
# admin must name the branch while staff need not (the branch is their own), so that one body gets a 422.
EXCLUDED = [positive_data_acceptance]
MAX_EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}  # per operation and database
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(params=["sqlite", "postgres"])
def migrated(request: pytest.FixtureRequest, settings: Settings, migrated_template: Path) -> Iterator[Settings]:
    """Fuzz on both databases: each refuses different things (SQLite: integers past 64 bits; PostgreSQL: NUL)."""
    if request.param == "sqlite":
        settings.instance_path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(migrated_template, settings.instance_path / "scholarise.db")
        yield settings
        return
    base = services.require("postgres", services.postgres_url())
    with services.temporary_postgres_database(base) as url:
        on_postgres = settings.replace(database_url=url)
        upgrade(on_postgres)
        yield on_postgres


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fuzzed email settings name random hosts: resolve none of them (a test must never leave this machine)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in LOOPBACK:
            raise socket.gaierror(socket.EAI_NONAME, "not resolved in the tests")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def fuzzed_app(api_app: Flask, tokens: Tokens, make_task: Callable[..., int], loopback_only: None) -> Iterator[Flask]:
    for i in range(3):
        make_task("North", title=f"Seed {i}")
    settings_ = api_app.extensions["scholarise_settings"]
    api_app.extensions["scholarise_settings"] = settings_.replace(mail_timeout=1.0)
    api_app.config["fuzz_token"] = tokens.admin
    yield api_app


def fuzz(operation: Any, mode: GenerationMode, token: str) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES[mode], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(headers=bearer(token), excluded_checks=EXCLUDED)

    run()


@pytest.mark.slow
def test_every_answer_matches_the_description_and_none_is_a_server_error(fuzzed_app: Flask) -> None:
    # Driven through Hypothesis directly: Schemathesis' pytest integration (from_fixture) fails under pytest 9.2
    # ("'Function' object has no attribute '_nodeid'"), and a fixture-built app needs no import-time schema.
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", fuzzed_app)
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzz(operation, mode, fuzzed_app.config["fuzz_token"])
            except Exception as exc:  # noqa: BLE001 - collect every operation's failure, report them together
                failures.append(f"{operation.label} ({mode.value}):\n{exc}")
    assert operations >= 13
    assert not failures, "\n\n".join(failures)
