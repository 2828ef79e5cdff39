"""Error pages and JSON errors written for people, plus the security headers every response gets."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, flash, jsonify, redirect, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from admin.auth import wants_json

MESSAGES = {
    400: ("That request could not be used",
          "Something in what was sent is missing or malformed. Go back and try again."),
    401: ("Please sign in", "You need to sign in to see this page."),
    403: ("You do not have access to this page",
          "Your account cannot open this page. Staff accounts see the import page and their own branch's tasks; "
          "ask an administrator if you need more."),
    404: ("We could not find that page",
          "The address may be mistyped, or the task was deleted or belongs to another branch."),
    405: ("That action is not available here", "Use the buttons on the page instead of typing the address."),
    413: ("The file is too large", "Split the file into smaller files and upload them one by one."),
    429: ("Too many attempts", "Wait a few minutes and try again."),
    500: ("Something went wrong on our side",
          "The error was logged. Try again in a moment; if it keeps happening, tell the person who runs the site."),
}
CSRF_MESSAGE = ("This form has expired or did not come from this site. Go back, reload the page and submit it again.")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; "
    "form-action 'self'"
)


def too_large_message() -> str:
    limit = current_app.extensions["scholarise_settings"].max_upload_bytes
    return (f"The file is larger than the {limit // (1024 * 1024)} MB limit. "
            "Split it into smaller files and upload them one by one.")


def _render(code: int, detail: str | None = None) -> Any:
    title, text = MESSAGES.get(code, MESSAGES[500] if code >= 500 else MESSAGES[400])
    message = detail or text
    if wants_json():
        return jsonify(error=title, message=message, status=code), code
    return render_template("pages/error.html", code=code, title=title, message=message), code


def register_error_handlers(app: Flask) -> None:
    """Friendly pages for HTTP errors, CSRF failures and unexpected exceptions; headers on every response."""

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> Any:
        return _render(400, CSRF_MESSAGE)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if exc.code is None or exc.code < 400 or exc.code not in MESSAGES:
            return exc
        if exc.code == 413 and request.method == "POST" and request.endpoint == "bulk_import.upload":
            # Far over the limit the body is never read (so the form's choices are gone): back to the form.
            flash(too_large_message(), "error")
            return redirect(request.path, code=303)
        if exc.code == 413:
            return _render(413, too_large_message())
        detail = exc.description if exc.code == 404 and exc.description and "requested URL" not in exc.description \
            else None
        return _render(exc.code, detail)

    @app.errorhandler(InternalServerError)
    def unexpected(exc: InternalServerError) -> Any:
        # Flask has already logged the original exception (and re-raises it under TESTING).
        return _render(500)

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        if response.mimetype in ("text/html", "application/json"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response
