"""A stateful loopback stand-in for Clerk's Backend API, covering what a bulk importer touches.

Why: the importer must be proven against Clerk's real behaviour (200 not 201, one error entry per
taken identifier, 429 + Retry-After, lost responses after a commit) without the network. The shapes
follow ``/work/shared/reference/clerk/NOTES.md`` section 8. Runs in-process (``FakeClerk().start()``)
or as a process that workers in other processes share:

    python -m tests.support.fake_clerk --port 0 --rate-limit 100 --window 10 --secret-key sk_test_x

Faults are driven from Python (:meth:`FakeClerk.fail_next`, :meth:`FakeClerk.control`) or over HTTP
with ``POST /__control`` (no auth) and read back from ``GET /__control/stats``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from tests.support.fake_clerk_state import ClerkState
from tests.support.fake_clerk_users import FAULT_KINDS, Response, error, errors_response

__all__ = ["DEFAULT_SECRET_KEY", "FAULT_KINDS", "FakeClerk", "main", "remote_control"]

DEFAULT_SECRET_KEY = "sk_test_fakeclerk0000000000000000"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a delayed handler must not hold up stop()
    fake: FakeClerk


class _Handler(BaseHTTPRequestHandler):
    """Reads the request, asks :class:`FakeClerk` what to answer, then answers, waits or hangs up."""

    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
    disable_nagle_algorithm = True  # answer at once, not after the 40 ms delayed-ACK wait
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        fake = self.server.fake
        try:
            resp = fake.handle(method, parts.path, parse_qs(parts.query, keep_blank_values=True), self.headers, body)
        except Exception as exc:  # a bug in the fake must not look like an injected "dropped connection"
            traceback.print_exc()
            resp = errors_response(500, [error("fake_clerk_bug", "FakeClerk crashed", repr(exc))])
        if resp.delay:
            fake._stopping.wait(resp.delay)
        if resp.drop:
            self.close_connection = True  # the server closes the socket; nothing was written
            return
        payload = json.dumps(resp.body).encode()
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in resp.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (its read timeout): fine, that is the point of "slow"
            self.close_connection = True


class FakeClerk:
    """The loopback server plus its state; every public method is thread-safe.

    Args:
        secret_keys: the keys accepted in ``Authorization: Bearer <key>`` (one string or several).
        rate_limit: requests allowed per ``window`` seconds per key, all endpoints (None = unlimited).
            The default is a development instance's 100 per 10 s.
        user_cap: answer 403 ``user_quota_exceeded`` once this many users exist (None = no cap).
        delay: seconds every ``/v1`` response waits before being sent.
        required_identifiers: identifiers a new user must have (422 ``form_data_missing`` otherwise).
        password_required: the instance has passwords on, so a user needs a password unless the
            request says ``skip_password_requirement``.
        state_file: users are loaded from this JSON file at start and saved to it at stop.
    """

    def __init__(
        self,
        secret_keys: str | Sequence[str] = DEFAULT_SECRET_KEY,
        *,
        rate_limit: int | None = 100,
        window: float = 10.0,
        user_cap: int | None = None,
        delay: float = 0.0,
        required_identifiers: Sequence[str] = ("email_address",),
        password_required: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        state_file: str | Path | None = None,
    ) -> None:
        keys = (secret_keys,) if isinstance(secret_keys, str) else tuple(secret_keys)
        self.secret_key = keys[0]
        self.state = ClerkState(
            keys,
            rate_limit=rate_limit,
            window=window,
            user_cap=user_cap,
            delay=delay,
            required_identifiers=tuple(required_identifiers),
            password_required=password_required,
        )
        self._host, self._port = host, port
        self._state_file = Path(state_file) if state_file else None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        """Bind and serve in a daemon thread; returns the API base URL (``http://127.0.0.1:P/v1``)."""
        if self._server is not None:
            return self.url
        if self._state_file and self._state_file.exists():
            self.state.load(json.loads(self._state_file.read_text()))
        self._stopping.clear()
        self._server = _Server((self._host, self._port), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-clerk", daemon=True
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving, release the port, wake delayed handlers, and save the state file if any."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server, self._thread = None, None
        if self._state_file:
            self._state_file.write_text(json.dumps(self.state.dump()))

    def __enter__(self) -> FakeClerk:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeClerk is not started")
        return self._server.server_address[1]

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:P``: where ``/__control`` lives."""
        return f"http://{self._host}:{self.port}"

    @property
    def url(self) -> str:
        """The API base URL, as ``CLERK_API_URL`` would hold it."""
        return f"{self.origin}/v1"

    # -- control (the same operations ``POST /__control`` offers) ------------------------------

    def control(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a control payload (see :func:`ClerkState.control`) and return the stats."""
        return self.state.control(payload)

    def fail_next(self, kind: str, count: int = 1, *, delay: float | None = None) -> None:
        """Make the next ``count`` ``POST /v1/users`` answer with a fault (one of FAULT_KINDS)."""
        self.state.control({"fail_next": [{"kind": kind, "count": count, "delay": delay}]})

    def set_delay(self, seconds: float) -> None:
        """Delay every ``/v1`` response by ``seconds`` (0 turns it off)."""
        self.state.control({"delay": seconds})

    def configure(self, **settings: Any) -> None:
        """Change ``rate_limit``, ``window``, ``user_cap`` or ``delay`` while running."""
        self.state.control(settings)

    def clear_faults(self) -> None:
        self.state.control({"clear_faults": True})

    def reset(self) -> None:
        """Forget users, faults, stats and rate-limit history."""
        self.state.control({"reset": True})

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def users(self) -> list[dict[str, Any]]:
        """Copies of every stored User JSON, oldest first."""
        return self.state.all_users()

    def add_user(self, email: str, *, external_id: str | None = None, **fields: Any) -> dict[str, Any]:
        """Create a user directly (no HTTP, no rate limit, no faults) to set a scene up quickly."""
        body = {"email_address": [email], "external_id": external_id, "skip_password_requirement": True, **fields}
        resp = self.state.create(body, count=False)
        if resp.status != 200:
            raise ValueError(f"add_user refused: {resp.body}")
        return resp.body

    # -- request handling ------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: Mapping[str, str], body: bytes
    ) -> Response:
        """Decide the answer to one request (the HTTP handler only transports it)."""
        if path.startswith("/v1/__control"):
            path = path[3:]
        if path == "/__control" and method == "POST":
            try:
                payload = json.loads(body or b"{}")
                if not isinstance(payload, dict):
                    raise ValueError("the control body must be a JSON object")
                return Response(200, self.state.control(payload))
            except (ValueError, TypeError, KeyError) as exc:
                return errors_response(400, [error("bad_request", "bad control payload", str(exc))])
        if path == "/__control/stats" and method == "GET":
            return Response(200, self.state.stats())
        return self.state.api(method, path, query, headers, body)


def remote_control(base_url: str, payload: Mapping[str, Any] | None = None, *, timeout: float = 5.0) -> dict[str, Any]:
    """POST a control payload to a fake running elsewhere (``base_url`` with or without ``/v1``)."""
    origin = base_url.rstrip("/").removesuffix("/v1")
    if payload is None:
        resp = requests.get(f"{origin}/__control/stats", timeout=timeout)
    else:
        resp = requests.post(f"{origin}/__control", json=dict(payload), timeout=timeout)
    resp.raise_for_status()
    return resp.json()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; print the base URL as the first stdout line."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.fake_clerk", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--rate-limit", type=int, default=100, help="requests per window per key; 0 = unlimited")
    parser.add_argument("--window", type=float, default=10.0, help="rate-limit window in seconds")
    parser.add_argument("--secret-key", action="append", help="accepted key (repeatable)")
    parser.add_argument("--user-cap", type=int, default=None, help="403 user_quota_exceeded after N users")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to delay every response")
    parser.add_argument("--state-file", default=None, help="load users from / save them to this JSON file")
    args = parser.parse_args(argv)

    fake = FakeClerk(
        args.secret_key or DEFAULT_SECRET_KEY,
        rate_limit=args.rate_limit or None,
        window=args.window,
        user_cap=args.user_cap,
        delay=args.delay,
        host=args.host,
        port=args.port,
        state_file=args.state_file,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(fake.start(), flush=True)
    while not stop.wait(0.2):
        pass
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
