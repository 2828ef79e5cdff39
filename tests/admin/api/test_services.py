"""``/api/services`` and ``/api/init``: administrators only; every variant answers with its action."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.admin.api.conftest import Tokens, bearer
from tests.admin.api.test_auth import assert_envelope


def test_an_admin_reads_the_service_status(client: FlaskClient, tokens: Tokens) -> None:
    response = client.get("/api/services/status", headers=bearer(tokens.admin))
    assert response.status_code == 200, response.text
    status = response.get_json()
    assert status["mode"] == "stub"
    assert status["database"]["status"] == "ok"
    assert "pid" in status["this_process"]


def test_an_admin_restarts_the_services(client: FlaskClient, tokens: Tokens) -> None:
    response = client.post("/api/services/restart", headers=bearer(tokens.admin))
    assert response.status_code == 200, response.text
    body = response.get_json()
    assert body["restarted"] is False  # nothing was initialised in this process yet
    assert body["probe_requested"] is True
    assert isinstance(body["recovery"], dict)


def test_get_init_initialises_once_then_reports_it_was_already_done(client: FlaskClient, tokens: Tokens) -> None:
    first = client.get("/api/init", headers=bearer(tokens.admin)).get_json()
    second = client.get("/api/init", headers=bearer(tokens.admin)).get_json()
    assert first["action"] == second["action"] == "initialize"
    assert first["initialize"]["initialized"] is True
    assert second["initialize"]["already_initialized"] is True


def test_post_init_with_force_initialises_again(client: FlaskClient, tokens: Tokens) -> None:
    client.get("/api/init", headers=bearer(tokens.admin))
    body = client.post("/api/init", json={"force": True}, headers=bearer(tokens.admin)).get_json()
    assert body["action"] == "initialize"
    assert body["initialize"]["already_initialized"] is False
    assert client.post("/api/init", headers=bearer(tokens.admin)).get_json()["initialize"]["already_initialized"]


def test_get_init_reports_the_status_or_restarts(client: FlaskClient, tokens: Tokens) -> None:
    status = client.get("/api/init?action=status", headers=bearer(tokens.admin)).get_json()
    assert status["action"] == "status" and status["status"]["mode"] == "stub"
    restart = client.get("/api/init?action=restart", headers=bearer(tokens.admin)).get_json()
    assert restart["action"] == "restart" and "recovery" in restart["restart"]


def test_an_unknown_init_action_or_body_is_refused(client: FlaskClient, tokens: Tokens) -> None:
    body = assert_envelope(client.get("/api/init?action=explode", headers=bearer(tokens.admin)), 422, "invalid_input")
    assert set(body["errors"]) == {"action"}
    body = assert_envelope(client.post("/api/init", json={"force": "maybe"}, headers=bearer(tokens.admin)),
                           422, "invalid_input")
    assert set(body["errors"]) == {"force"}


@pytest.mark.parametrize("method,path", [
    ("get", "/api/services/status"), ("post", "/api/services/restart"), ("get", "/api/init"),
    ("get", "/api/init?action=status"), ("get", "/api/init?action=restart"), ("post", "/api/init"),
])
def test_staff_cannot_see_or_control_the_services(client: FlaskClient, tokens: Tokens, method: str, path: str) -> None:
    body = assert_envelope(getattr(client, method)(path, headers=bearer(tokens.north)), 403, "forbidden")
    assert "administrators" in body["message"]
    assert_envelope(getattr(client, method)(path), 401, "unauthorized")
