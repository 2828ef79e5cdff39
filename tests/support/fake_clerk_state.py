"""The state and rules of :mod:`tests.support.fake_clerk`: users, validation, rate limit, faults, stats.

Kept apart from the HTTP plumbing so the rules read as one list: what Clerk checks, in the order it
checks them. Everything here runs under one lock; only waiting (slow responses) happens outside it.
"""

from __future__ import annotations

import copy
import json
import math
import re
import secrets
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Mapping
from typing import Any

from tests.support.fake_clerk_users import (
    FAULT_KINDS,
    FAULTS,
    TAKEN,
    Response,
    as_request,
    build_user,
    error,
    errors_response,
    identifiers,
    validate,
)

_USER_PATH = re.compile(r"^/v1/users/(user_[0-9A-Za-z]+)$")
_FILTERS = ("email_address", "external_id", "username", "user_id", "phone_number")


class ClerkState:
    """Users and the rules for creating and finding them, plus rate limit, faults and counters."""

    def __init__(
        self,
        keys: tuple[str, ...],
        *,
        rate_limit: int | None,
        window: float,
        user_cap: int | None,
        delay: float,
        required_identifiers: tuple[str, ...],
        password_required: bool,
    ) -> None:
        self.keys = set(keys)
        self.rate_limit, self.window, self.user_cap, self.delay = rate_limit, window, user_cap, delay
        self.required_identifiers, self.password_required = required_identifiers, password_required
        self._lock = threading.RLock()
        self._clear()

    def _clear(self) -> None:
        self._users: dict[str, dict[str, Any]] = {}  # insertion order = creation order
        self._index: dict[str, dict[str, str]] = {k: {} for k in TAKEN}
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self._faults: deque[tuple[str, float]] = deque()
        self._requests: dict[str, Counter[str]] = defaultdict(Counter)
        self._created: Counter[str] = Counter()
        self._attempts: Counter[str] = Counter()
        self._rate_limited = 0

    # -- control ---------------------------------------------------------------------------

    def control(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Apply ``{"reset", "clear_faults", "rate_limit", "window", "user_cap", "delay", "fail_next"}``.

        ``fail_next`` is a list of ``{"kind": one of FAULT_KINDS, "count": 1, "delay": seconds}``.
        Unknown keys are refused so a typo in a test does not silently do nothing.
        """
        unknown = set(payload) - {"reset", "clear_faults", "rate_limit", "window", "user_cap", "delay", "fail_next"}
        if unknown:
            raise ValueError(f"unknown control keys: {sorted(unknown)}")
        faults = []
        for item in payload.get("fail_next") or ():
            if str(item["kind"]) not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {item['kind']!r}; use one of {', '.join(FAULT_KINDS)}")
            faults += [(str(item["kind"]), float(item.get("delay") or 0))] * int(item.get("count", 1))
        with self._lock:
            if payload.get("reset"):
                self._clear()
            if payload.get("clear_faults"):
                self._faults.clear()
            if "rate_limit" in payload:
                self.rate_limit = int(payload["rate_limit"]) if payload["rate_limit"] else None
            if "window" in payload:
                self.window = float(payload["window"])
            if "user_cap" in payload:
                self.user_cap = None if payload["user_cap"] is None else int(payload["user_cap"])
            if "delay" in payload:
                self.delay = float(payload["delay"] or 0)
            self._faults.extend(faults)
        return self.stats()

    def stats(self) -> dict[str, Any]:
        """Counters that let a test prove what happened (e.g. no email was created twice)."""
        with self._lock:
            return {
                "users": len(self._users),
                "requests_total": sum(sum(c.values()) for c in self._requests.values()),
                "requests": {route: dict(c) for route, c in self._requests.items()},
                "rate_limited": self._rate_limited,
                "pending_faults": [kind for kind, _ in self._faults],
                "created_per_email": dict(self._created),
                "post_attempts_per_email": dict(self._attempts),
                "settings": {
                    "rate_limit": self.rate_limit,
                    "window": self.window,
                    "user_cap": self.user_cap,
                    "delay": self.delay,
                },
            }

    def all_users(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._users.values()))

    def dump(self) -> dict[str, Any]:
        return {"users": self.all_users()}

    def load(self, data: Mapping[str, Any]) -> None:
        with self._lock:
            for user in data.get("users", ()):
                self._store(user)

    # -- the API ---------------------------------------------------------------------------

    def api(
        self, method: str, path: str, query: dict[str, list[str]], headers: Mapping[str, str], body: bytes
    ) -> Response:
        """Authenticate, rate-limit, route; counts every request by route and status."""
        resp = self._auth(headers) or self._throttle(headers) or self._route(method, path, query, headers, body)
        if self.delay and resp.status != 429:
            resp.delay += self.delay
        route = "/v1/users/{user_id}" if _USER_PATH.match(path) else path
        with self._lock:
            self._requests[f"{method} {route}"]["dropped" if resp.drop else str(resp.status)] += 1
        return resp

    def _auth(self, headers: Mapping[str, str]) -> Response | None:
        value = headers.get("Authorization")
        if not value:
            return errors_response(
                401,
                [
                    error(
                        "authentication_invalid",
                        "Unauthorized request",
                        "You are not authenticated. Please provide a secret key.",
                    )
                ],
            )
        scheme, _, key = value.partition(" ")
        if scheme != "Bearer" or not key or " " in key.strip():
            return errors_response(
                401,
                [
                    error(
                        "authorization_header_format_invalid",
                        "Invalid authorization header",
                        "Invalid Authorization header format. Must be 'Bearer <YOUR_API_KEY>'",
                    )
                ],
            )
        if key.strip() not in self.keys:
            return errors_response(401, [FAULTS["401"][1]])
        return None

    def _throttle(self, headers: Mapping[str, str]) -> Response | None:
        """Sliding window per key; a refused request does not take a slot."""
        if not self.rate_limit:
            return None
        key = headers.get("Authorization", "")
        now = time.monotonic()
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) < self.rate_limit:
                hits.append(now)
                return None
            self._rate_limited += 1
            wait = max(1, math.ceil(hits[0] + self.window - now))
        return errors_response(
            429,
            [error("too_many_requests", "Too many requests", "Too many requests, retry later", resets_in=wait)],
            {"Retry-After": str(wait)},
        )

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], headers: Mapping[str, str], body: bytes
    ) -> Response:
        if path == "/v1/users" and method == "POST":
            ctype = headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                return errors_response(
                    415,
                    [
                        error(
                            "unsupported_content_type",
                            "Unsupported content type",
                            f"Content-Type {ctype or '(none)'} is not supported; use application/json.",
                        )
                    ],
                )
            try:
                data = json.loads(body or b"null")
            except ValueError:
                data = None
            if not isinstance(data, dict):
                return errors_response(
                    400,
                    [error("request_body_invalid", "Request body invalid", "The request body is not a JSON object.")],
                )
            return self.create(data)
        if path == "/v1/users" and method == "GET":
            return self._list(query, count=False)
        if path == "/v1/users/count" and method == "GET":
            return self._list(query, count=True)
        match = _USER_PATH.match(path)
        if match and method in ("GET", "DELETE"):
            with self._lock:
                user = self._users.get(match.group(1))
                if user is not None and method == "DELETE":
                    self._unstore(user)
                    return Response(200, {"object": "user", "id": user["id"], "deleted": True})
                if user is not None:
                    return Response(200, copy.deepcopy(user))
        return errors_response(404, [error("resource_not_found", "not found", "Resource not found")])

    # -- create ----------------------------------------------------------------------------

    def create(self, data: dict[str, Any], *, count: bool = True) -> Response:
        """``POST /v1/users`` from a parsed body; ``count=False`` for scene set-up (no faults, no stats)."""
        emails = data.get("email_address") if isinstance(data.get("email_address"), list) else []
        fault, fault_delay = ("", 0.0)
        with self._lock:
            if count:
                for email in emails:
                    if isinstance(email, str):
                        self._attempts[email.strip().lower()] += 1
                if self._faults:
                    fault, fault_delay = self._faults.popleft()
        if fault in FAULTS:
            status, entry = FAULTS[fault]
            return errors_response(status, [dict(entry)])
        problems = validate(
            data, required_identifiers=self.required_identifiers, password_required=self.password_required
        )
        if problems:
            return errors_response(problems[0], problems[1])
        with self._lock:
            taken = self._conflicts(data)
            if taken:
                return errors_response(422, taken)
            if self.user_cap is not None and len(self._users) >= self.user_cap:
                return errors_response(
                    403,
                    [
                        error(
                            "user_quota_exceeded",
                            "User quota exceeded",
                            f"You have reached your limit of {self.user_cap} users.",
                        )
                    ],
                )
            user = build_user(data)
            self._store(user)
            if count:
                for address in user["email_addresses"]:
                    self._created[address["email_address"]] += 1
        resp = Response(200, copy.deepcopy(user), {"Clerk-Trace-Id": secrets.token_hex(16)})
        if fault == "commit_drop":
            resp.drop = True
        elif fault == "commit_500":
            resp = errors_response(500, [dict(FAULTS["500"][1])])
        elif fault == "slow":
            resp.delay += fault_delay
        return resp

    def _conflicts(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """One ``form_identifier_exists`` entry per taken identifier (called under the lock)."""
        out = []
        for kind, values in identifiers(data).items():
            for value in values:
                if value in self._index[kind]:
                    out.append(error("form_identifier_exists", TAKEN[kind], param_name=kind))
        return out

    def _store(self, user: dict[str, Any]) -> None:
        self._users[user["id"]] = user
        for kind, values in identifiers(as_request(user)).items():
            for value in values:
                self._index[kind][value] = user["id"]

    def _unstore(self, user: dict[str, Any]) -> None:
        del self._users[user["id"]]
        for kind, values in identifiers(as_request(user)).items():
            for value in values:
                self._index[kind].pop(value, None)

    def _list(self, query: dict[str, list[str]], *, count: bool) -> Response:
        """``GET /v1/users`` (bare array) and ``/count``; filters of different kinds are ANDed."""
        for name in _FILTERS:
            if len(query.get(name, ())) > 100:
                return errors_response(
                    400,
                    [
                        error(
                            "malformed_request_parameters",
                            "too many values",
                            f"{name} accepts up to 100 values.",
                            param_name=name,
                        )
                    ],
                )
        try:
            limit = int(query.get("limit", ["10"])[0])
            offset = int(query.get("offset", ["0"])[0])
        except ValueError:
            limit = offset = -1
        if not 1 <= limit <= 500 or offset < 0:
            return errors_response(
                400,
                [
                    error(
                        "malformed_request_parameters",
                        "invalid limit or offset",
                        "limit must be 1..500 and offset at least 0.",
                    )
                ],
            )
        with self._lock:
            users = [u for u in self._users.values() if self._matches(u, query)]
            if count:
                return Response(200, {"object": "total_count", "total_count": len(users)})
            order = (query.get("order_by") or ["-created_at"])[0]
            seq = {uid: i for i, uid in enumerate(self._users)}
            users.sort(key=lambda u: (u["created_at"], seq[u["id"]]), reverse=order.startswith("-"))
            return Response(200, copy.deepcopy(users[offset : offset + limit]))

    @staticmethod
    def _matches(user: Mapping[str, Any], query: dict[str, list[str]]) -> bool:
        ident = identifiers(as_request(user))
        if "email_address" in query and not set(ident["email_address"]) & {v.lower() for v in query["email_address"]}:
            return False
        if "username" in query and not set(ident["username"]) & {v.lower() for v in query["username"]}:
            return False
        if "phone_number" in query and not set(ident["phone_number"]) & set(query["phone_number"]):
            return False
        for name, value in (("external_id", user.get("external_id")), ("user_id", user["id"])):
            if name not in query:
                continue
            include = {v[1:] if v[:1] == "+" else v for v in query[name] if v[:1] != "-"}
            exclude = {v[1:] for v in query[name] if v[:1] == "-"}
            if (include and value not in include) or value in exclude:
                return False
        return True
