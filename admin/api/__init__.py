"""The JSON API for other applications, under ``/api``, described by OpenAPI 3 at ``/api/openapi.json``.

Why flask-smorest (0.47) rather than apispec alone or a hand-written description: the marshmallow
schema that a view declares with ``@bp.arguments`` is the one webargs validates the request with,
and the one ``@bp.response`` serialises the answer with; flask-smorest builds the OpenAPI paths,
parameters, bodies and responses from those same decorators (through apispec). So the description
cannot drift from the code: a field added to a schema is validated, returned and documented at once,
and the Schemathesis test (``tests/admin/api/test_openapi_fuzz.py``) fuzzes the served description
against the real app. With apispec alone every path would be documented a second time by hand (in
docstrings or YAML); a hand-written file drifts silently. The email settings endpoints reuse
``scholarise.email_settings.EmailConfigurationSchema``, the same schema the admin page validates with.

Two flask-smorest defaults are changed on purpose (:class:`ScholariseApi`): its app-wide
``HTTPException`` handler is not installed (it would turn the admin site's HTML error pages into
JSON) — ``admin.api.errors`` installs one that acts on ``/api`` paths only, with our error envelope;
and the catch-all "default" error response is replaced by the exact refusals of each operation.

Authentication and CSRF: see :mod:`admin.api.auth`.
"""

from __future__ import annotations

from flask import Flask
from flask_smorest import Api

from admin.api.errors import ErrorSchema, register_app_handlers

DESCRIPTION = """Drive Scholarise's background services from another application.

Authenticate with `Authorization: Bearer <token>` (create one with `scholarise create-token --role admin|staff
[--branch B]`) or, from the admin site's own pages, with its session cookie plus the `X-CSRFToken` header on
requests that change something. Staff tokens see and import into their own branch only; services, `/api/init`
and email settings are for administrators.

Every error answers `{"code": "...", "message": "...", "errors": {"field": ["..."]}}`."""


class ScholariseApi(Api):
    """flask-smorest's Api with our error envelope and no app-wide error handler (see the module docstring)."""

    ERROR_SCHEMA = ErrorSchema
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self) -> None:
        """Replaced by :func:`admin.api.errors.register_error_handlers`, which leaves other paths alone."""


def register_api(app: Flask) -> ScholariseApi:
    """Mount the API blueprints, serve their description and exempt them from the site's CSRFProtect.

    Call it after the site has set up sign-in, CSRF and its error pages.
    """
    from admin.api.email import bp as email_bp
    from admin.api.services import bp as services_bp
    from admin.api.tasks import bp as tasks_bp
    from admin.extensions import csrf

    app.config.update(API_TITLE="Scholarise background services", API_VERSION="1", OPENAPI_VERSION="3.0.3",
                      OPENAPI_URL_PREFIX="/api", OPENAPI_JSON_PATH="openapi.json")
    api = ScholariseApi(app, spec_kwargs={
        "info": {"description": DESCRIPTION},
        "security": [{"bearerAuth": []}, {"sessionCookie": []}],
        "servers": [{"url": "/"}],
    })
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    api.spec.components.security_scheme("sessionCookie", {"type": "apiKey", "in": "cookie", "name": "session"})
    blueprints = [tasks_bp, services_bp, email_bp]
    for bp in blueprints:
        api.register_blueprint(bp)
        # Bearer requests cannot be forged cross-site; session requests are checked in admin.api.auth.
        csrf.exempt(bp)
    register_app_handlers(app)
    return api
