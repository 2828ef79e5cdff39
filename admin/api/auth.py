"""Who is calling the API: a bearer token or the admin site's session — and why CSRF applies to one only.

* ``Authorization: Bearer <token>``: the token is looked up by its hash (``scholarise.api_tokens``).
  A browser never attaches this header on its own, so a forged cross-site request cannot carry it:
  token requests need no CSRF token, and the API blueprints are exempt from the site's CSRFProtect.
* No ``Authorization`` header: the admin site's Flask-Login session cookie. A browser *does* send
  that cookie with a forged cross-site form, so every session request that changes something
  (POST/PUT/PATCH/DELETE, and the state-changing ``GET /api/init`` variants) must carry the page's
  CSRF token in ``X-CSRFToken`` (or a ``csrf_token`` form field), checked here with Flask-WTF.
* A present but wrong ``Authorization`` header is refused (401); it never falls back to the cookie.

Both kinds become a :class:`Principal` judged by the same rules as the site (``admin.auth``):
admins see everything; staff see and import for their own branch only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import current_app, g, request
from flask_wtf.csrf import validate_csrf
from sqlalchemy.exc import OperationalError
from wtforms import ValidationError

from admin.api.errors import ApiError
from admin.auth import branch_scope, is_admin, signed_in
from admin.extensions import db
from scholarise.api_tokens import TOUCH_INTERVAL, InvalidTokenError, record_use, verify_token
from scholarise.models import Role, utcnow

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="scholarise"'}


@dataclass(frozen=True)
class Principal:
    """The caller: ``kind`` is "token" or "session"; ``label`` is what ``created_by`` records."""

    kind: str
    role: str
    branch_id: int | None
    label: str

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


def authenticate() -> None:
    """``before_request`` of every API blueprint: sets ``g.api_principal`` or refuses with 401/403."""
    if request.method == "OPTIONS":
        return
    header = request.headers.get("Authorization")
    if header is not None:
        g.api_principal = _from_bearer(header)
        return
    user = signed_in()
    if user is None:
        raise ApiError(401, "unauthorized", "Send an API token ('Authorization: Bearer <token>'; create one with "
                       "`scholarise create-token`) or sign in to the admin site.", headers=CHALLENGE)
    g.api_principal = Principal("session", user.role, user.branch_id, f"user:{user.email}")
    if request.method not in SAFE_METHODS:
        require_csrf_for_session()


def _from_bearer(header: str) -> Principal:
    scheme, _, secret = header.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise ApiError(401, "unauthorized", "The Authorization header must be 'Bearer <token>'.", headers=CHALLENGE)
    try:
        token = verify_token(db.session, secret)
        principal = Principal("token", token.role, token.branch_id, f"token:{token.name}")
        token_id, last_used = token.id, token.last_used_at
    except InvalidTokenError as exc:
        raise ApiError(401, "invalid_token", str(exc), headers=CHALLENGE) from None
    finally:
        db.session.rollback()  # end the read before writing (SQLite takes the write lock on the first write)
    if last_used is None or utcnow() - last_used >= TOUCH_INTERVAL:
        _record_use(token_id)
    return principal


def _record_use(token_id: int) -> None:
    """Best effort: a busy database must not refuse a valid request over a last-used timestamp."""
    try:
        record_use(db.session, token_id)
        db.session.commit()
    except OperationalError as exc:
        db.session.rollback()
        logger.info("could not record the use of API token #%s: %s", token_id, type(exc).__name__)


def require_csrf_for_session() -> None:
    """Session callers must prove the request comes from the site's own page (bearer callers need not)."""
    if current_principal().kind != "session" or not current_app.config.get("WTF_CSRF_ENABLED", True):
        return
    token = None
    for name in current_app.config.get("WTF_CSRF_HEADERS", ["X-CSRFToken", "X-CSRF-Token"]):
        token = token or request.headers.get(name)
    if token is None and request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        token = request.form.get(current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"))
    try:
        validate_csrf(token)
    except ValidationError as exc:
        raise ApiError(403, "csrf_failed", f"{exc.args[0]} Requests signed in with the admin site's session must "
                       "send the page's CSRF token in the X-CSRFToken header; other applications should use an "
                       "API token instead.") from None


def current_principal() -> Principal:
    principal = g.get("api_principal")
    if principal is None:  # pragma: no cover - every API blueprint runs authenticate() first
        raise ApiError(401, "unauthorized", "Not authenticated.", headers=CHALLENGE)
    return principal


def require_admin(action: str) -> Principal:
    """The caller, if an admin; else 403 naming what was refused."""
    principal = current_principal()
    if not is_admin(principal):
        raise ApiError(403, "forbidden", f"Only administrators can {action}.")
    return principal


def visible_branch(principal: Principal) -> int | None:
    """The branch a caller is limited to (None: every branch); -1 for a staff caller without one."""
    return branch_scope(principal)
