"""``/api/email``: notification email settings, global or per branch, and their checks (administrators).

The request body of ``PUT /api/email/config`` is ``scholarise.email_settings.EmailConfigurationSchema``,
the schema the admin page validates with; the password is write-only (answers say ``has_password``).
``branch_id`` in the query string picks a branch; without it the global settings are meant.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, current_app, jsonify
from marshmallow import fields, validate

from admin.api.auth import current_principal, require_admin
from admin.api.blueprint import ApiBlueprint
from admin.api.schemas import ID
from admin.extensions import db
from scholarise import email_settings, smtp_check
from scholarise.config import Settings
from scholarise.errors import NotFoundError
from scholarise.models import Branch

bp = ApiBlueprint("api_email", __name__, url_prefix="/api/email",
                  description="Notification email settings, global or per branch, and their checks (administrators).")


class ScopeQuery(ma.Schema):
    branch_id = fields.Integer(validate=ID,
                               metadata={"description": "The branch; absent: the global settings"})


class SmtpSchema(ma.Schema):
    host = fields.String(required=True)
    port = fields.Integer(required=True)
    security = fields.String(required=True)
    username = fields.String(allow_none=True, required=True)
    has_password = fields.Boolean(required=True)
    sender = fields.String(required=True)
    source = fields.String(required=True, metadata={"description": "branch, global or environment"})


class EffectiveSchema(ma.Schema):
    """What applies to this scope's emails after falling back to the global settings and the environment."""

    source = fields.String(required=True)
    enabled = fields.Boolean(required=True)
    notify_on_success = fields.Boolean(required=True)
    notify_on_failure = fields.Boolean(required=True)
    include_task_details = fields.Boolean(required=True)
    include_error_log = fields.Boolean(required=True)
    recipients = fields.List(fields.String(), required=True)
    recipients_source = fields.String(required=True)
    smtp = fields.Nested(SmtpSchema, allow_none=True, required=True)
    delivery = fields.String(required=True)


class EmailSettingsSchema(ma.Schema):
    branch_id = fields.Integer(allow_none=True, required=True)
    configuration = fields.Nested(email_settings.EmailConfigurationSchema, allow_none=True, required=True,
                                  metadata={"description": "What is stored for this scope (null: nothing)"})
    effective = fields.Nested(EffectiveSchema, required=True)


class TestEmailBody(ma.Schema):
    to = fields.List(fields.Email(), validate=validate.Length(min=1, max=50),
                     metadata={"description": "Addresses; absent: the configured admin recipients"})


class CheckResultSchema(ma.Schema):
    ok = fields.Boolean(required=True)
    kind = fields.String(required=True, metadata={"description": "ok, or what failed (refused, auth, tls, ...)"})
    message = fields.String(required=True)
    server = fields.String(allow_none=True, required=True)
    source = fields.String(allow_none=True, required=True)


def _settings() -> Settings:
    return current_app.extensions["scholarise_settings"]


def _scope(query: dict[str, Any]) -> int | None:
    branch_id = query.get("branch_id")
    if branch_id is not None and db.session.get(Branch, branch_id) is None:
        raise NotFoundError(f"There is no branch with id {branch_id}.")
    return branch_id


def _described(branch_id: int | None) -> Response:
    # describe() answers JSON-ready values; EmailSettingsSchema documents exactly that shape.
    return jsonify(email_settings.describe(db.session, branch_id, settings=_settings()))


@bp.get("/config")
@bp.arguments(ScopeQuery, location="query")
@bp.alt_response(200, schema=EmailSettingsSchema, success=True, description="Stored and effective settings")
@bp.refusals(401, 403, 404)
def get_config(query: dict[str, Any]) -> Response:
    """The stored settings of a branch or the global ones (never the password), and what is in effect."""
    require_admin("see the email settings")
    return _described(_scope(query))


@bp.put("/config")
@bp.arguments(ScopeQuery, location="query")
@bp.arguments(email_settings.EmailConfigurationSchema)
@bp.alt_response(200, schema=EmailSettingsSchema, success=True, description="Saved; stored and effective settings")
@bp.refusals(400, 401, 403, 404, 415)
def put_config(query: dict[str, Any], data: dict[str, Any]) -> Response:
    """Create or update the settings of a branch or the global ones; only the fields given change.

    An empty or absent `password` keeps the stored one; `clear_password: true` removes it.
    """
    require_admin("change the email settings")
    branch_id = _scope(query)
    email_settings.save_configuration(db.session, branch_id, data, settings=_settings(),
                                      updated_by=current_principal().label)
    db.session.commit()
    return _described(branch_id)


@bp.post("/test-connection")
@bp.arguments(ScopeQuery, location="query")
@bp.response(200, CheckResultSchema, description="The check ran; ok says whether it succeeded, message why not")
@bp.refusals(401, 403, 404)
def test_connection(query: dict[str, Any]) -> dict[str, Any]:
    """Connect to the SMTP server that applies, negotiate TLS as configured and log in."""
    require_admin("test the email settings")
    branch_id = _scope(query)
    return smtp_check.test_connection(db.session, branch_id=branch_id, settings=_settings()).to_dict()


@bp.post("/test-email")
@bp.arguments(ScopeQuery, location="query")
@bp.arguments(TestEmailBody, required=False)
@bp.response(200, CheckResultSchema, description="The attempt ran; ok says whether the email was accepted")
@bp.refusals(400, 401, 403, 404, 415)
def test_email(query: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Send a test email now through the server that applies, to `to` or the admin recipients."""
    require_admin("send test emails")
    branch_id = _scope(query)
    return smtp_check.send_test_email(db.session, branch_id=branch_id, settings=_settings(),
                                      to=body.get("to")).to_dict()
