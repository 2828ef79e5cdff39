"""``/api/services`` and ``/api/init``: the background services' status, restart and initialisation (admins only).

``/api/init`` keeps the original system's shape: ``GET`` initialises, ``GET ?action=status`` reports,
``GET ?action=restart`` restarts, ``POST {"force": true}`` re-initialises. The answer always names
its ``action`` and carries the result under that name, so one description covers every variant.
Initialising and restarting change state, so a caller signed in with the site's session must send
the CSRF token for them even on GET (a bearer-token caller need not).
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import current_app
from marshmallow import fields, validate

from admin.api.auth import require_admin, require_csrf_for_session
from admin.api.blueprint import ApiBlueprint
from scholarise.config import Settings

bp = ApiBlueprint("api_services", __name__, url_prefix="/api",
                  description="Background services: status, restart and initialisation (administrators).")


class ProcessSchema(ma.Schema):
    """What this web process runs."""

    initialized = fields.Boolean(required=True)
    mode = fields.String(allow_none=True, required=True, metadata={"description": "embedded, distributed or stub"})
    process = fields.String(allow_none=True, required=True)
    pid = fields.Integer(required=True)
    since = fields.String(allow_none=True, required=True, metadata={"description": "ISO time it was initialised"})
    initializations = fields.Integer(required=True)
    scheduler = fields.Boolean(required=True)
    embedded_worker = fields.Boolean(required=True)


class InitResultSchema(ProcessSchema):
    already_initialized = fields.Boolean(required=True)
    started = fields.List(fields.String(), required=True)
    stopped = fields.List(fields.String(), required=True)


class StatusSchema(ma.Schema):
    """Health of the whole deployment; the parts are described in the admin dashboard's terms."""

    checked_at = fields.String(required=True)
    mode = fields.String(required=True)
    this_process = fields.Nested(ProcessSchema, required=True)
    broker = fields.Dict(required=True)
    database = fields.Dict(required=True)
    health_interval = fields.Float()
    heartbeat_timeout = fields.Float()
    workers = fields.List(fields.Dict(), metadata={"description": "Worker processes seen recently, with state"})
    processes = fields.List(fields.Dict())
    scheduler = fields.Dict()
    last_probe = fields.Dict(allow_none=True)
    recent_probes = fields.List(fields.Dict())
    outbox = fields.Dict()
    tasks = fields.Dict()


class RestartSchema(ma.Schema):
    restarted = fields.Boolean(required=True, metadata={"description": "False when nothing ran in this process"})
    initialize = fields.Nested(InitResultSchema, allow_none=True, required=True)
    recovery = fields.Dict(required=True)
    probe_requested = fields.Boolean(required=True)


class InitQuery(ma.Schema):
    action = fields.String(validate=validate.OneOf(["status", "restart"]),
                           metadata={"description": "Absent: initialise (once per process)"})


class InitBody(ma.Schema):
    force = fields.Boolean(load_default=False, metadata={"description": "Stop and start again what runs here"})


class InitAnswerSchema(ma.Schema):
    action = fields.String(required=True, validate=validate.OneOf(["initialize", "status", "restart"]))
    initialize = fields.Nested(InitResultSchema)
    status = fields.Nested(StatusSchema)
    restart = fields.Nested(RestartSchema)


def _settings() -> Settings:
    return current_app.extensions["scholarise_settings"]


def _services() -> Any:
    from actors import services

    return services


@bp.get("/services/status")
@bp.response(200, StatusSchema)
@bp.refusals(401, 403)
def service_status() -> dict[str, Any]:
    """Database, broker, workers, scheduler, mail outbox and task backlog; starts nothing."""
    require_admin("see the service status")
    return _services().get_service_status(settings=_settings())


@bp.post("/services/restart")
@bp.response(200, RestartSchema)
@bp.refusals(401, 403)
def restart() -> dict[str, Any]:
    """Re-initialise what runs in this process and recover stalled work across the cluster."""
    require_admin("restart the services")
    return _services().restart_services(settings=_settings())


@bp.get("/init")
@bp.arguments(InitQuery, location="query")
@bp.response(200, InitAnswerSchema)
@bp.refusals(401, 403)
def init_get(query: dict[str, Any]) -> dict[str, Any]:
    """Initialise the services of this process (once), or report (`action=status`) or restart them."""
    action = query.get("action") or "initialize"
    services = _services()
    if action == "status":
        require_admin("see the service status")
        return {"action": "status", "status": services.get_service_status(settings=_settings())}
    require_admin(f"{action} the services")
    require_csrf_for_session()
    if action == "restart":
        return {"action": "restart", "restart": services.restart_services(settings=_settings())}
    return {"action": "initialize", "initialize": services.initialize(settings=_settings())}


@bp.post("/init")
@bp.arguments(InitBody, required=False)
@bp.response(200, InitAnswerSchema)
@bp.refusals(400, 401, 403, 415)
def init_post(body: dict[str, Any]) -> dict[str, Any]:
    """Initialise the services of this process; `{"force": true}` stops and starts them again."""
    require_admin("initialise the services")
    force = bool(body.get("force", False))
    return {"action": "initialize", "initialize": _services().initialize(force, settings=_settings())}
