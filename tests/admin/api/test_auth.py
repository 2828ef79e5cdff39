"""Who may call the API: bearer tokens, the site's session with CSRF, and the answers when neither works."""

from __future__ import annotations

from collections.abc import Callable

import jsonschema_rs
from flask import Flask
from flask.testing import FlaskClient
from schemathesis.specs.openapi.definitions import OPENAPI_30
from sqlalchemy.orm import Session, sessionmaker

from scholarise.api_tokens import revoke_token
from scholarise.db import session_scope
from scholarise.models import ApiToken
from tests.admin.api.conftest import Tokens, bearer, people

NEW_TASK = {"title": "From another app", "user_type": "teacher", "items": people(2, "auth")}


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"code", "message", "errors"}
    assert body["code"] == code
    assert body["message"]
    return body


def test_a_request_without_credentials_is_refused_with_a_bearer_challenge(client: FlaskClient) -> None:
    response = client.get("/api/tasks")
    body = assert_envelope(response, 401, "unauthorized")
    assert "create-token" in body["message"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_malformed_authorization_header_is_refused(client: FlaskClient, tokens: Tokens) -> None:
    assert_envelope(client.get("/api/tasks", headers={"Authorization": f"Token {tokens.admin}"}), 401, "unauthorized")
    assert_envelope(client.get("/api/tasks", headers={"Authorization": "Bearer "}), 401, "unauthorized")


def test_an_unknown_token_is_refused_without_echoing_it(client: FlaskClient, tokens: Tokens) -> None:
    forged = tokens.admin[:-4] + "AAAA"
    response = client.get("/api/tasks", headers=bearer(forged))
    body = assert_envelope(response, 401, "invalid_token")
    assert forged not in response.text and "AAAA" not in body["message"]


def test_a_revoked_token_is_refused(client: FlaskClient, tokens: Tokens,
                                    session_factory: sessionmaker[Session]) -> None:
    assert client.get("/api/tasks", headers=bearer(tokens.north)).status_code == 200
    with session_scope(session_factory) as session:
        token_id = session.query(ApiToken).filter_by(name="north app").one().id
        revoke_token(session, token_id)
    body = assert_envelope(client.get("/api/tasks", headers=bearer(tokens.north)), 401, "invalid_token")
    assert "revoked" in body["message"]


def test_a_token_records_when_it_was_last_used(client: FlaskClient, tokens: Tokens,
                                               session_factory: sessionmaker[Session]) -> None:
    client.get("/api/tasks", headers=bearer(tokens.admin))
    with session_scope(session_factory) as session:
        assert session.query(ApiToken).filter_by(name="tests admin").one().last_used_at is not None
        assert session.query(ApiToken).filter_by(name="north app").one().last_used_at is None


def test_a_bearer_request_that_changes_something_needs_no_csrf_token(api_app: Flask, client: FlaskClient,
                                                                     tokens: Tokens) -> None:
    assert api_app.config.get("WTF_CSRF_ENABLED", True)  # the site's CSRFProtect is on
    response = client.post("/api/tasks", json=NEW_TASK, headers=bearer(tokens.north))
    assert response.status_code == 201, response.text


def test_the_site_session_can_read_without_a_csrf_token(client: FlaskClient, signed_in: Callable[..., str]) -> None:
    signed_in("admin")
    response = client.get("/api/tasks")
    assert response.status_code == 200, response.text


def test_a_session_request_that_changes_something_without_the_csrf_token_is_refused(
        client: FlaskClient, signed_in: Callable[..., str], tokens: Tokens) -> None:
    signed_in("staff")
    body = assert_envelope(client.post("/api/tasks", json=NEW_TASK), 403, "csrf_failed")
    assert "X-CSRFToken" in body["message"]
    assert client.get("/api/tasks").get_json()["total"] == 0  # nothing was created
    assert_envelope(client.post("/api/tasks", json=NEW_TASK, headers={"X-CSRFToken": "forged"}), 403, "csrf_failed")


def test_a_session_request_with_the_pages_csrf_token_is_accepted(client: FlaskClient, signed_in: Callable[..., str],
                                                                tokens: Tokens) -> None:
    token = signed_in("staff")
    response = client.post("/api/tasks", json=NEW_TASK, headers={"X-CSRFToken": token})
    assert response.status_code == 201, response.text
    assert response.get_json()["created_by"] == "user:staff-user@example.org"
    assert response.get_json()["branch"] == "North"


def test_a_session_upload_may_carry_the_csrf_token_as_a_form_field(client: FlaskClient,
                                                                  signed_in: Callable[..., str]) -> None:
    import io

    token = signed_in("staff")
    data = {"user_type": "teacher", "dry_run": "true", "csrf_token": token,
            "file": (io.BytesIO(b"first_name,last_name,email\nAda,Lovelace,ada@example.org\n"), "t.csv")}
    response = client.post("/api/tasks/upload", data=data, content_type="multipart/form-data")
    assert response.status_code == 200, response.text


def test_the_session_get_that_restarts_services_needs_the_csrf_token(client: FlaskClient,
                                                                     signed_in: Callable[..., str]) -> None:
    token = signed_in("admin")
    assert client.get("/api/init?action=status").status_code == 200
    assert_envelope(client.get("/api/init?action=restart"), 403, "csrf_failed")
    assert client.get("/api/init?action=restart", headers={"X-CSRFToken": token}).status_code == 200


def test_a_wrong_bearer_token_never_falls_back_to_the_session(client: FlaskClient,
                                                              signed_in: Callable[..., str]) -> None:
    signed_in("admin")
    assert_envelope(client.get("/api/tasks", headers=bearer("scht_wrong")), 401, "invalid_token")


def test_the_openapi_description_is_public_and_lists_every_operation(client: FlaskClient) -> None:
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"].startswith("3.")
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert {"/api/tasks", "/api/tasks/upload", "/api/tasks/{task_id}", "/api/tasks/{task_id}/cancel",
            "/api/tasks/{task_id}/retry", "/api/tasks/{task_id}/results", "/api/tasks/{task_id}/results.csv",
            "/api/services/status", "/api/services/restart", "/api/init", "/api/email/config",
            "/api/email/test-connection", "/api/email/test-email"} <= set(spec["paths"])
    error = spec["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"code", "message", "errors"}
    assert not list(jsonschema_rs.validator_for(OPENAPI_30).iter_errors(spec))  # a valid OpenAPI 3.0 document


def test_unknown_api_paths_and_wrong_methods_answer_json_not_html(client: FlaskClient, tokens: Tokens) -> None:
    assert_envelope(client.get("/api/no-such-thing", headers=bearer(tokens.admin)), 404, "not_found")
    assert_envelope(client.get("/api/no-such-thing"), 404, "not_found")
    response = client.put("/api/tasks", headers=bearer(tokens.admin))
    assert_envelope(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]
    assert_envelope(client.get("/api/tasks/not-a-number", headers=bearer(tokens.admin)), 404, "not_found")


def test_pages_outside_the_api_keep_the_sites_own_error_pages(client: FlaskClient) -> None:
    response = client.get("/admin/no-such-page", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
