"""Every route under /api, read from ``app.url_map`` (so a new one is covered): who may call it; is it described."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from tests.admin.api.conftest import Tokens, bearer
from tests.admin.api.test_auth import assert_envelope

PUBLIC = {"/api/openapi.json"}
ADMIN_ONLY = {("GET", "/api/services/status"), ("POST", "/api/services/restart"), ("GET", "/api/init"),
              ("POST", "/api/init"), ("GET", "/api/email/config"), ("PUT", "/api/email/config"),
              ("POST", "/api/email/test-connection"), ("POST", "/api/email/test-email"),
              ("DELETE", "/api/tasks/{task_id}")}


def api_routes(app: Flask) -> list[tuple[str, str]]:
    """(method, OpenAPI-style path) of every API route."""
    routes = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        if path.startswith("/api/") and path not in PUBLIC:
            routes += [(method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return routes


def call(client: FlaskClient, method: str, path: str, task_id: int, headers: dict[str, str] | None = None):
    return client.open(path.replace("{task_id}", str(task_id)), method=method, headers=headers or {}, json={})


def test_every_api_route_is_in_the_openapi_description(api_app: Flask, client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").get_json()["paths"]
    described = {(method.upper(), path) for path, operations in spec.items() for method in operations
                 if method != "parameters"}
    assert set(api_routes(api_app)) == described


def test_every_api_route_refuses_an_anonymous_caller(api_app: Flask, client: FlaskClient,
                                                     make_task: Callable[..., int]) -> None:
    task_id = make_task("North")
    for method, path in api_routes(api_app):
        assert_envelope(call(client, method, path, task_id), 401, "unauthorized")


def test_staff_are_refused_what_only_administrators_may_do(api_app: Flask, client: FlaskClient, tokens: Tokens,
                                                           make_task: Callable[..., int]) -> None:
    task_id = make_task("North")
    assert ADMIN_ONLY <= set(api_routes(api_app))
    for method, path in sorted(ADMIN_ONLY):
        assert_envelope(call(client, method, path, task_id, bearer(tokens.north)), 403, "forbidden")


def test_another_branchs_task_is_not_found_on_every_task_route(api_app: Flask, client: FlaskClient, tokens: Tokens,
                                                               make_task: Callable[..., int]) -> None:
    task_id = make_task("North")
    scoped = [(m, p) for m, p in api_routes(api_app) if "{task_id}" in p]
    assert len(scoped) >= 6
    for method, path in scoped:
        assert_envelope(call(client, method, path, task_id, bearer(tokens.south)), 404, "not_found")
    assert client.get(f"/api/tasks/{task_id}", headers=bearer(tokens.north)).status_code == 200
