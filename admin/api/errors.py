"""One error shape for every answer under ``/api``: ``{"code", "message", "errors"}``.

``code`` is stable (clients branch on it), ``message`` is written for a person, ``errors`` maps a
field path (``"items.3.email"``, ``"file"``) to its messages and is ``{}`` when no field is to blame.
Werkzeug's HTML error pages never reach an API client: flask-smorest's validation errors, unknown
``/api`` paths (404), wrong methods (405), oversize bodies (413) and uncaught exceptions (500) are
all rendered here. Paths outside ``/api`` keep the site's own error pages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import marshmallow as ma
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from scholarise.errors import InputError, InvalidTransitionError, NotFoundError, ScholariseError

logger = logging.getLogger(__name__)

API_PREFIX = "/api"

# Stable codes for plain HTTP errors (those raised by Werkzeug, Flask or flask-smorest).
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}
HTTP_MESSAGES = {
    400: "The request could not be read. Check that the body is well-formed JSON or multipart form data.",
    404: "There is nothing at this address. See /api/openapi.json for the endpoints.",
    405: "This address does not accept that method.",
    413: "The request body is larger than the upload limit.",
    422: "Some values are not valid; see errors.",
    500: "Something went wrong on our side; it has been logged. Try again, and tell the administrator if it persists.",
}


class ErrorSchema(ma.Schema):
    """The body of every error answer (documents flask-smorest's error responses too)."""

    code = ma.fields.String(required=True, metadata={"description": "Stable machine-readable code"})
    message = ma.fields.String(required=True, metadata={"description": "What went wrong, for a person"})
    errors = ma.fields.Dict(
        keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()), required=True,
        metadata={"description": "Field path -> messages; empty when no single field is to blame"},
    )


class ApiError(Exception):
    """Raise from a view (or auth hook) to answer with the error envelope."""

    def __init__(self, status: int, code: str, message: str, *, errors: Mapping[str, list[str]] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.errors = dict(errors or {})
        self.headers = dict(headers or {})


def error_response(status: int, code: str, message: str, errors: Mapping[str, list[str]] | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
    response = jsonify({"code": code, "message": message, "errors": dict(errors or {})})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow/webargs nested messages -> ``{"items.0.email": ["..."]}``.

    webargs nests everything under the location (``json``, ``query``, ``multipart`` ...); that
    level is dropped because each operation reads its input from one place.
    """
    flat: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key == "_schema":
                path = prefix or "_schema"
            flat.update({k: flat.get(k, []) + v for k, v in flatten_errors(value, path).items()})
    elif isinstance(messages, (list, tuple)):
        if all(isinstance(m, str) for m in messages):
            flat[prefix or "_schema"] = [str(m) for m in messages]
        else:
            for index, value in enumerate(messages):
                flat.update(flatten_errors(value, f"{prefix}.{index}" if prefix else str(index)))
    elif messages is not None:
        flat[prefix or "_schema"] = [str(messages)]
    return flat


_LOCATIONS = {"json", "query", "querystring", "form", "files", "multipart", "view_args", "headers"}


def _field_errors(data: Mapping[str, Any]) -> dict[str, list[str]]:
    messages = data.get("errors") or data.get("messages") or {}
    if isinstance(messages, Mapping) and set(messages) <= _LOCATIONS:
        merged: dict[str, list[str]] = {}
        for nested in messages.values():
            merged.update(flatten_errors(nested))
        return merged
    return flatten_errors(messages)


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def handle_http_exception(error: HTTPException) -> Response:
    """The error envelope for an HTTP error (validation, 404, 405, 413 ...)."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    errors = _field_errors(data) if data else {}
    message = data.get("message") if isinstance(data, Mapping) else None
    if not message:
        message = HTTP_MESSAGES.get(status) or error.description or error.name
    if status == 400 and errors:
        message = "The request could not be read; see errors."
    if status == 413:
        limit = request.max_content_length
        message = (f"The request body is larger than the {limit:,} byte limit. Split the file into smaller ones."
                   if limit else HTTP_MESSAGES[413])
    headers = {}
    if status == 405 and getattr(error, "valid_methods", None):
        headers["Allow"] = ", ".join(sorted(error.valid_methods))  # type: ignore[arg-type]
    if status >= 500:
        logger.error("API %s %s answered %s", request.method, request.path, status, exc_info=error)
    return error_response(status, HTTP_CODES.get(status, "error"), message, errors, headers)


def handle_api_error(error: ApiError) -> Response:
    return error_response(error.status, error.code, error.message, error.errors, error.headers)


def handle_scholarise_error(error: ScholariseError) -> Response:
    """Library errors carry messages meant for people; map each kind to its status."""
    if isinstance(error, NotFoundError):
        return error_response(404, "not_found", str(error))
    if isinstance(error, InvalidTransitionError):
        return error_response(409, "invalid_state", str(error))
    if isinstance(error, InputError):
        fields = getattr(error, "errors", None)  # e.g. EmailSettingsError names each field
        return error_response(422, "invalid_input", str(error), flatten_errors(fields) if fields else None)
    from actors.imports import NotQueuedError

    if isinstance(error, NotQueuedError):  # stored, not lost: say so, so the client does not submit it again
        logger.warning("API %s %s: %s", request.method, request.path, error)
        return error_response(503, "not_queued", f"{error}. Do not submit it again.")
    logger.exception("API %s %s: %s", request.method, request.path, type(error).__name__)
    return error_response(500, "internal_error", HTTP_MESSAGES[500])


def handle_unexpected(error: Exception) -> Response:
    """An uncaught exception in an API view: logged with its traceback, answered without any detail."""
    if isinstance(error, RecursionError) and request.is_json:  # json.loads on thousands of nested brackets
        return error_response(400, "bad_request", "The JSON body is nested too deeply to be read.")
    logger.exception("API %s %s failed", request.method, request.path)
    return error_response(500, "internal_error", HTTP_MESSAGES[500])


def _api_first(previous: Callable[[Any], Any] | None) -> Callable[[HTTPException], Any]:
    """An app-wide handler: the envelope on ``/api`` paths, else whatever the site registered (or Flask's page)."""

    def handler(error: HTTPException) -> Any:
        if is_api_path(request.path):
            return handle_http_exception(error)
        return previous(error) if previous is not None else error

    return handler


def register_blueprint_handlers(bp: Any) -> None:
    """The envelope for an API blueprint's own routes (blueprint handlers win over any app-wide page handler)."""
    bp.register_error_handler(HTTPException, handle_http_exception)
    bp.register_error_handler(ApiError, handle_api_error)
    bp.register_error_handler(ScholariseError, handle_scholarise_error)
    bp.register_error_handler(Exception, handle_unexpected)


def register_app_handlers(app: Flask) -> None:
    """App-wide handlers that answer with the envelope on ``/api`` paths only.

    An unknown ``/api`` path (404) or a wrong method (405) matches no blueprint, so only app-wide
    handlers see them. These wrap whatever the site registered before, so the site keeps its own
    pages everywhere else: call this after the site has registered its error handlers.
    """
    app_handlers = app.error_handler_spec.setdefault(None, {})
    site_default = app_handlers.get(None, {}).get(HTTPException)
    app.register_error_handler(HTTPException, _api_first(site_default))
    for code in (404, 405):
        exc_class, _ = app._get_exc_class_and_code(code)
        previous = app_handlers.get(code, {}).get(exc_class) or site_default
        app.register_error_handler(code, _api_first(previous))
