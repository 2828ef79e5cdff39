"""What a Clerk user is to :mod:`tests.support.fake_clerk`: create-body rules, the User JSON, error shapes.

Pure functions, no state: :mod:`tests.support.fake_clerk_state` applies them under its lock.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_BASE62 = string.digits + string.ascii_letters
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_PWNED = {"password", "password1", "password123", "12345678", "123456789", "qwerty123", "iloveyou"}
_HASHERS = {
    "bcrypt",
    "bcrypt_sha256_django",
    "md5",
    "pbkdf2_sha1",
    "pbkdf2_sha256",
    "pbkdf2_sha256_django",
    "pbkdf2_sha512",
    "phpass",
    "md5_phpass",
    "scrypt_firebase",
    "scrypt_werkzeug",
    "sha256",
    "ldap_ssha",
    "argon2",
    "argon2i",
    "argon2id",
    "sha512_symfony",
    "pbkdf2_sha512_hex",
    "awscognito",
}
_STR_FIELDS = {
    "external_id",
    "first_name",
    "last_name",
    "locale",
    "username",
    "password",
    "password_digest",
    "password_hasher",
    "totp_secret",
    "created_at",
    "legal_accepted_at",
}
_BOOL_FIELDS = {
    "skip_password_checks",
    "skip_password_requirement",
    "skip_legal_checks",
    "skip_user_requirement",
    "delete_self_enabled",
    "create_organization_enabled",
    "bypass_client_trust",
    "banned",
    "locked",
}
_LIST_FIELDS = {
    "email_address",
    "email_address_identification_status",
    "phone_number",
    "phone_number_identification_status",
    "web3_wallet",
    "backup_codes",
}
_META_FIELDS = {"public_metadata", "private_metadata", "unsafe_metadata"}
_ALLOWED = _STR_FIELDS | _BOOL_FIELDS | _LIST_FIELDS | _META_FIELDS | {"create_organizations_limit"}
TAKEN = {
    "email_address": "That email address is taken. Please try another.",
    "phone_number": "That phone number is taken. Please try another.",
    "username": "That username is taken. Please try another.",
    "external_id": "That external ID is taken. Please try another.",  # code undocumented for this one
}


@dataclass
class Response:
    """What to answer: status and JSON body, or wait first, or hang up without answering."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


def error(code: str, message: str, long_message: str | None = None, **meta: Any) -> dict[str, Any]:
    """One ``ClerkError`` entry."""
    return {"message": message, "long_message": long_message or message, "code": code, "meta": meta}


def errors_response(status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None) -> Response:
    """The ``ClerkErrors`` envelope, with a trace id in the body and the header."""
    trace = secrets.token_hex(16)
    return Response(
        status,
        {"errors": errors, "meta": {}, "clerk_trace_id": trace},
        {"Clerk-Trace-Id": trace, **(headers or {})},
    )


FAULTS: dict[str, tuple[int, dict[str, Any]]] = {
    "500": (500, error("internal_clerk_error", "Oops, an unexpected error occurred")),
    "503": (503, error("service_unavailable", "Service unavailable", "The service is temporarily unavailable.")),
    "409": (
        409,
        error(
            "resource_locked",
            "Resource locked",
            "The resource is currently being modified by another request. Please try again.",
        ),
    ),
    "402": (402, error("payment_required", "Payment required", "This feature requires a paid plan.")),
    "401": (
        401,
        error(
            "clerk_key_invalid",
            "The provided Clerk Secret Key is invalid.",
            "The provided Clerk Secret Key is invalid. Make sure that your Clerk Secret Key is correct.",
        ),
    ),
    "403": (
        403,
        error("authorization_invalid", "Unauthorized request", "You are not authorized to perform this request"),
    ),
}


FAULT_KINDS = (*FAULTS, "commit_drop", "commit_500", "slow")
"""What ``fail_next`` accepts: an HTTP error answered instead of creating, or create-then-misbehave."""


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_BASE62) for _ in range(27))


def _now_ms() -> int:
    return int(time.time() * 1000)


def validate(
    data: dict[str, Any], *, required_identifiers: Sequence[str], password_required: bool
) -> tuple[int, list[dict[str, Any]]] | None:
    """The checks Clerk makes on a create body, in its order; ``(status, errors)`` or None if valid."""
    unknown = [k for k in data if k not in _ALLOWED]
    if unknown:
        return 422, [
            error("form_param_unknown", "is unknown", f"{k} is not a valid parameter for this request.", param_name=k)
            for k in unknown
        ]
    bad_type = [
        k
        for k, v in data.items()
        if v is not None
        and (
            (k in _STR_FIELDS and not isinstance(v, str))
            or (k in _BOOL_FIELDS and not isinstance(v, bool))
            or (k in _LIST_FIELDS and not (isinstance(v, list) and all(isinstance(i, str) for i in v)))
        )
    ]
    if bad_type:
        return 400, [
            error("request_body_invalid", "Request body invalid", f"{k} has the wrong type.", param_name=k)
            for k in bad_type
        ]
    found: list[dict[str, Any]] = []
    for k in _META_FIELDS:
        if data.get(k) is not None and not isinstance(data[k], dict):
            found.append(error("form_param_value_invalid", "is invalid", f"{k} must be an object.", param_name=k))
    for email in data.get("email_address") or ():
        if not _EMAIL.match(email.strip()):
            found.append(
                error(
                    "form_param_format_invalid",
                    "must be a valid email address.",
                    "email_address must be a valid email address.",
                    param_name="email_address",
                )
            )
    for phone in data.get("phone_number") or ():
        if not _E164.match(phone):
            found.append(
                error(
                    "form_param_format_invalid",
                    "must be a valid phone number",
                    "phone_number must be a valid phone number according to E.164 international standard.",
                    param_name="phone_number",
                )
            )
    for k in ("email_address", "phone_number"):
        status = data.get(f"{k}_identification_status")
        if status is not None and len(status) != len(data.get(k) or ()):
            found.append(
                error(
                    "form_param_array_length_mismatch",
                    "length mismatch",
                    f"{k}_identification_status must have one entry per {k}.",
                    param_name=f"{k}_identification_status",
                )
            )
    found += _check_time(data) + _check_password(data, password_required)
    skip_user = data.get("skip_user_requirement")
    missing = [k for k in required_identifiers if not data.get(k)]
    if missing and not skip_user:
        found.append(
            error(
                "form_data_missing",
                "missing data",
                f"{', '.join(repr(k) for k in missing)} data doesn't match user requirements set for this instance",
                param_names=missing,
            )
        )
    return (422, found) if found else None


def _check_time(data: dict[str, Any]) -> list[dict[str, Any]]:
    for k in ("created_at", "legal_accepted_at"):
        if data.get(k):
            try:
                when = datetime.fromisoformat(data[k])
            except ValueError:
                return [error("form_param_invalid_time", "is invalid", f"{k} must be RFC3339.", param_name=k)]
            if when.tzinfo and when > datetime.now(UTC):
                return [
                    error(
                        "form_disallow_future_date", "is in the future", f"{k} cannot be in the future.", param_name=k
                    )
                ]
    return []


def _check_password(data: dict[str, Any], password_required: bool) -> list[dict[str, Any]]:
    password, digest, hasher = data.get("password"), data.get("password_digest"), data.get("password_hasher")
    if digest and not hasher:
        return [
            error(
                "form_param_missing",
                "is missing",
                "password_hasher is required with password_digest.",
                param_name="password_hasher",
            )
        ]
    if hasher and hasher not in _HASHERS:
        return [
            error(
                "form_param_value_invalid",
                "is invalid",
                f"{hasher} is not a supported hasher.",
                param_name="password_hasher",
            )
        ]
    if password and not data.get("skip_password_checks"):
        if len(password) < 8:
            return [
                error(
                    "form_password_length_too_short", "Passwords must be 8 characters or more.", param_name="password"
                )
            ]
        if password.lower() in _PWNED:
            return [
                error(
                    "form_password_pwned",
                    "Password has been found in an online data breach.",
                    "Password has been found in an online data breach. For account safety, "
                    "please use a different password.",
                    param_name="password",
                )
            ]
    if (
        password_required
        and not password
        and not digest
        and not data.get("skip_password_requirement")
        and not data.get("skip_user_requirement")
    ):
        return [
            error(
                "form_data_missing",
                "missing data",
                "'password' data doesn't match user requirements set for this instance",
                param_names=["password"],
            )
        ]
    return []


def identifiers(data: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every unique identifier of a create body, normalised as the uniqueness index keys it."""
    return {
        "email_address": [e.strip().lower() for e in data.get("email_address") or ()],
        "phone_number": list(data.get("phone_number") or ()),
        "username": [data["username"].lower()] if data.get("username") else [],
        "external_id": [data["external_id"]] if data.get("external_id") else [],
    }


def build_user(data: dict[str, Any]) -> dict[str, Any]:
    """The full User JSON Clerk answers with (ids, ms timestamps, verified admin-created emails)."""
    now = _now_ms()
    created = now
    if data.get("created_at"):
        created = int(datetime.fromisoformat(data["created_at"]).timestamp() * 1000)
    statuses = data.get("email_address_identification_status") or []
    emails = []
    for i, address in enumerate(data.get("email_address") or ()):
        reserved = i < len(statuses) and statuses[i] == "reserved"
        emails.append(
            {
                "id": _new_id("idn_"),
                "object": "email_address",
                "email_address": address.strip().lower(),
                "reserved": reserved,
                "linked_to": [],
                "matches_sso_connection": False,
                "created_at": now,
                "updated_at": now,
                "verification": None
                if reserved
                else {
                    "object": "verification_admin",
                    "status": "verified",
                    "strategy": "admin",
                    "attempts": None,
                    "expire_at": None,
                },
            }
        )
    phones = [
        {
            "id": _new_id("idn_"),
            "object": "phone_number",
            "phone_number": p,
            "reserved_for_second_factor": False,
            "default_second_factor": False,
            "reserved": False,
            "linked_to": [],
            "backup_codes": None,
            "created_at": now,
            "updated_at": now,
            "verification": {
                "object": "verification_admin",
                "status": "verified",
                "strategy": "admin",
                "attempts": None,
                "expire_at": None,
            },
        }
        for p in data.get("phone_number") or ()
    ]
    return {
        "id": _new_id("user_"),
        "object": "user",
        "external_id": data.get("external_id"),
        "primary_email_address_id": emails[0]["id"] if emails else None,
        "primary_phone_number_id": phones[0]["id"] if phones else None,
        "primary_web3_wallet_id": None,
        "username": data.get("username"),
        "first_name": data.get("first_name"),
        "last_name": data.get("last_name"),
        "locale": data.get("locale"),
        "image_url": "https://img.clerk.com/placeholder",
        "has_image": False,
        "public_metadata": data.get("public_metadata") or {},
        "private_metadata": data.get("private_metadata") or {},
        "unsafe_metadata": data.get("unsafe_metadata") or {},
        "email_addresses": emails,
        "phone_numbers": phones,
        "web3_wallets": [],
        "passkeys": [],
        "password_enabled": bool(data.get("password") or data.get("password_digest")),
        "two_factor_enabled": False,
        "totp_enabled": bool(data.get("totp_secret")),
        "backup_code_enabled": bool(data.get("backup_codes")),
        "mfa_enabled_at": None,
        "mfa_disabled_at": None,
        "external_accounts": [],
        "saml_accounts": [],
        "enterprise_accounts": [],
        "last_sign_in_at": None,
        "banned": bool(data.get("banned")),
        "locked": bool(data.get("locked")),
        "lockout_expires_in_seconds": None,
        "verification_attempts_remaining": 100,
        "created_at": created,
        "updated_at": now,
        "last_active_at": None,
        "delete_self_enabled": data.get("delete_self_enabled", True),
        "create_organization_enabled": data.get("create_organization_enabled", True),
        "create_organizations_limit": data.get("create_organizations_limit"),
        "legal_accepted_at": None,
        "bypass_client_trust": bool(data.get("bypass_client_trust")),
    }


def as_request(user: Mapping[str, Any]) -> dict[str, Any]:
    """A stored user seen as the create body it came from (for re-indexing)."""
    return {
        "email_address": [e["email_address"] for e in user.get("email_addresses", ())],
        "phone_number": [p["phone_number"] for p in user.get("phone_numbers", ())],
        "username": user.get("username"),
        "external_id": user.get("external_id"),
    }
