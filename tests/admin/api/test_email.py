"""``/api/email``: settings per branch or global (password write-only) and their checks, for administrators."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from tests.admin.api.conftest import Tokens, bearer
from tests.admin.api.test_auth import assert_envelope
from tests.support.smtp import SmtpServer, free_port

SECRET = "pa55-word-never-shown"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer(mode="plain", username="mailer", password=SECRET) as server:
        yield server


def settings_for(server: SmtpServer, **extra: object) -> dict[str, object]:
    return {"host": "127.0.0.1", "port": server.port, "security": "none", "username": "mailer",
            "password": SECRET, "from_address": "school@example.org", "recipients": ["head@example.org"], **extra}


def test_the_global_settings_start_empty_and_fall_back_to_the_environment(client: FlaskClient,
                                                                          tokens: Tokens) -> None:
    body = client.get("/api/email/config", headers=bearer(tokens.admin)).get_json()
    assert body["branch_id"] is None and body["configuration"] is None
    assert body["effective"]["source"] == "environment"
    assert body["effective"]["smtp"] is None and body["effective"]["delivery"].startswith("files in")


def test_saved_settings_come_back_without_the_password(client: FlaskClient, tokens: Tokens, smtp: SmtpServer) -> None:
    response = client.put("/api/email/config", json=settings_for(smtp), headers=bearer(tokens.admin))
    assert response.status_code == 200, response.text
    assert SECRET not in response.text
    stored = response.get_json()["configuration"]
    assert stored["has_password"] is True and "password" not in stored
    assert stored["updated_by"] == "token:tests admin"
    again = client.get("/api/email/config", headers=bearer(tokens.admin))
    assert SECRET not in again.text and again.get_json()["effective"]["smtp"]["host"] == "127.0.0.1"


def test_a_branch_gets_its_own_settings_and_inherits_the_rest(client: FlaskClient, tokens: Tokens,
                                                              smtp: SmtpServer) -> None:
    client.put("/api/email/config", json=settings_for(smtp), headers=bearer(tokens.admin))
    response = client.put(f"/api/email/config?branch_id={tokens.north_id}", json={"notify_on_success": False},
                          headers=bearer(tokens.admin))
    assert response.status_code == 200, response.text
    body = response.get_json()
    assert body["branch_id"] == tokens.north_id
    assert body["effective"]["notify_on_success"] is False
    assert body["effective"]["smtp"]["source"] == "global"
    south = client.get(f"/api/email/config?branch_id={tokens.south_id}", headers=bearer(tokens.admin)).get_json()
    assert south["configuration"] is None and south["effective"]["notify_on_success"] is True


def test_invalid_settings_are_refused_with_field_errors_and_nothing_is_saved(client: FlaskClient,
                                                                             tokens: Tokens) -> None:
    body = assert_envelope(client.put("/api/email/config", json={"port": 0, "security": "tls", "recipients": ["x"]},
                                      headers=bearer(tokens.admin)), 422, "invalid_input")
    assert {"port", "security", "recipients.0"} <= set(body["errors"])
    body = assert_envelope(client.put("/api/email/config", json={"host": "smtp.example.org", "port": 465,
                                                                 "security": "starttls"},
                                      headers=bearer(tokens.admin)), 422, "invalid_input")
    assert "port" in body["errors"] and "from_address" in body["errors"]
    assert client.get("/api/email/config", headers=bearer(tokens.admin)).get_json()["configuration"] is None


def test_an_unknown_branch_is_not_found(client: FlaskClient, tokens: Tokens) -> None:
    for response in (client.get("/api/email/config?branch_id=999", headers=bearer(tokens.admin)),
                     client.put("/api/email/config?branch_id=999", json={}, headers=bearer(tokens.admin)),
                     client.post("/api/email/test-connection?branch_id=999", headers=bearer(tokens.admin))):
        assert_envelope(response, 404, "not_found")


def test_the_connection_test_logs_in_to_the_configured_server(client: FlaskClient, tokens: Tokens,
                                                              smtp: SmtpServer) -> None:
    client.put("/api/email/config", json=settings_for(smtp), headers=bearer(tokens.admin))
    result = client.post("/api/email/test-connection", headers=bearer(tokens.admin)).get_json()
    assert result["ok"] is True, result
    assert smtp.logins and smtp.logins[-1][1] is True


def test_the_connection_test_reports_a_refused_port_as_a_result(client: FlaskClient, tokens: Tokens,
                                                                smtp: SmtpServer) -> None:
    closed = free_port()
    client.put("/api/email/config", json={**settings_for(smtp), "port": closed}, headers=bearer(tokens.admin))
    response = client.post("/api/email/test-connection", headers=bearer(tokens.admin))
    assert response.status_code == 200
    result = response.get_json()
    assert (result["ok"], result["kind"]) == (False, "refused")
    assert SECRET not in response.text


def test_a_test_email_is_delivered_to_the_given_address(client: FlaskClient, tokens: Tokens, smtp: SmtpServer) -> None:
    client.put("/api/email/config", json=settings_for(smtp), headers=bearer(tokens.admin))
    result = client.post("/api/email/test-email", json={"to": ["it@example.org"]},
                         headers=bearer(tokens.admin)).get_json()
    assert result["ok"] is True, result
    assert smtp.wait_for(1)[0].rcpt_tos == ["it@example.org"]


def test_a_test_email_to_an_invalid_address_is_refused(client: FlaskClient, tokens: Tokens) -> None:
    body = assert_envelope(client.post("/api/email/test-email", json={"to": ["nobody"]}, headers=bearer(tokens.admin)),
                           422, "invalid_input")
    assert "to.0" in body["errors"]


@pytest.mark.parametrize("method,path", [
    ("get", "/api/email/config"), ("put", "/api/email/config"), ("post", "/api/email/test-connection"),
    ("post", "/api/email/test-email"),
])
def test_staff_cannot_see_or_change_email_settings(client: FlaskClient, tokens: Tokens, method: str, path: str) -> None:
    kwargs = {"json": {}} if method != "get" else {}
    assert_envelope(getattr(client, method)(path, headers=bearer(tokens.north), **kwargs), 403, "forbidden")
    assert_envelope(getattr(client, method)(path, **kwargs), 401, "unauthorized")
