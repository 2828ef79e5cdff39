"""Clerk's Backend API as an :class:`~scholarise.providers.base.IdentityProvider`.

One attempt per call, classified: the caller (``scholarise.processing``) owns retries, backoff and
reconciliation, so the HTTP session has urllib3's automatic retries switched off - a silent retry
of ``POST /users`` could create an account twice, as Clerk has no idempotency key.
How Clerk answers is summarised in ``shared/reference/clerk/NOTES.md``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError
from urllib3.util.retry import Retry

from scholarise.errors import ProviderFatalError, ProviderRetryableError
from scholarise.providers.base import Account, AlreadyExistsError, NewUser, Pacer, RowRejectedError, no_pacing

logger = logging.getLogger(__name__)

MAX_FILTER_VALUES = 100  # Clerk accepts up to 100 values per list filter on GET /users
PAGE_LIMIT = 500  # the largest page Clerk serves; a chunk of 100 unique identifiers always fits
CONNECT_TIMEOUT = 5.0


class ClerkProvider:
    """Creates and finds Clerk users over one pooled HTTP session.

    Args:
        api_url: the Backend API base, e.g. ``https://api.clerk.com/v1``.
        secret_key: the instance's secret key; kept out of every message and ``repr``.
        timeout: read timeout in seconds (the connect timeout is at most ``CONNECT_TIMEOUT``);
            or a ``(connect, read)`` pair.
        pace: called before every request, lookups included, since Clerk counts them all.
        session: a session to use instead of the pooled one this class builds (the caller owns it).
    """

    name = "clerk"

    def __init__(
        self,
        api_url: str,
        secret_key: str,
        *,
        timeout: float | tuple[float, float] = 10.0,
        pace: Pacer = no_pacing,
        session: requests.Session | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.__secret_key = secret_key
        self.timeout = timeout if isinstance(timeout, tuple) else (min(CONNECT_TIMEOUT, timeout), timeout)
        self.pace = pace
        self._owns_session = session is None
        self.session = session if session is not None else _pooled_session()

    def __repr__(self) -> str:
        return f"ClerkProvider(api_url={self.api_url!r}, secret_key='***')"

    def close(self) -> None:
        """Release pooled connections (a session passed in stays the caller's to close)."""
        if self._owns_session:
            self.session.close()

    # -- IdentityProvider -------------------------------------------------------------------

    def find_users(self, *, emails: Sequence[str] = (), external_ids: Sequence[str] = ()) -> list[Account]:
        """Accounts matching any of the emails or external ids.

        Emails and external ids are looked up in separate requests: the spec does not say whether
        two filter kinds in one request are ANDed or ORed, and ANDing would miss accounts.
        """
        found: dict[str, Account] = {}
        wanted_emails = _unique(e.strip().lower() for e in emails)
        # Clerk reads a leading "+"/"-" as include/exclude, so a literal one needs an explicit "+".
        wanted_ids = [f"+{x}" if x[0] in "+-" else x for x in _unique(e.strip() for e in external_ids)]
        for param, values in (("email_address", wanted_emails), ("external_id", wanted_ids)):
            for start in range(0, len(values), MAX_FILTER_VALUES):
                for user in self._list_users(param, values[start : start + MAX_FILTER_VALUES]):
                    account = _account(user)
                    found.setdefault(account.id, account)
        return list(found.values())

    def create_user(self, user: NewUser) -> Account:
        """``POST /users``; a 200 is the new account, everything else raises a typed error."""
        body = {
            "email_address": [user.email],
            "first_name": user.first_name,
            "last_name": user.last_name,
            "external_id": user.external_id,
            "private_metadata": dict(user.private_metadata),
            "skip_password_requirement": True,
        }
        data = self._request("POST", "/users", json=body)
        if not isinstance(data, dict) or "id" not in data:
            raise ProviderRetryableError("Clerk answered 200 without a user; it may have been created", ambiguous=True)
        return _account(data)

    # -- HTTP -------------------------------------------------------------------------------

    def _list_users(self, param: str, values: list[str]) -> list[dict[str, Any]]:
        users: list[dict[str, Any]] = []
        offset = 0
        while True:
            params: list[tuple[str, str | int]] = [(param, v) for v in values]
            params += [("limit", PAGE_LIMIT), ("offset", offset)]
            page = self._request("GET", "/users", params=params)
            if not isinstance(page, list):
                raise ProviderRetryableError("Clerk answered the user lookup with something other than a list")
            users.extend(page)
            if len(page) < PAGE_LIMIT:
                return users
            offset += PAGE_LIMIT

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One paced attempt; returns the decoded JSON of a 2xx or raises a classified error."""
        self.pace()
        started = time.monotonic()
        try:
            resp = self.session.request(
                method,
                self.api_url + path,
                headers={"Authorization": f"Bearer {self.__secret_key}", "Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,
                **kwargs,
            )
        except requests.RequestException as exc:
            _raise_transport(method, path, exc)
        trace = _trace_id(resp)
        logger.debug(
            "clerk %s %s -> %s in %.0f ms (clerk_trace_id=%s)",
            method,
            path,
            resp.status_code,
            (time.monotonic() - started) * 1000,
            trace,
        )
        if 200 <= resp.status_code < 300:
            try:
                return resp.json()
            except ValueError:
                raise ProviderRetryableError(
                    f"Clerk answered {method} {path} with a body that is not JSON (trace {trace})",
                    ambiguous=method == "POST",
                ) from None
        _raise_status(method, path, resp, trace)


def _pooled_session() -> requests.Session:
    """A session whose adapter never retries on its own (retrying is the caller's decision)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=Retry(total=0, read=False, redirect=False))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "scholarise-clerk-provider"
    return session


def _raise_transport(method: str, path: str, exc: requests.RequestException) -> NoReturn:
    """Network failures: was the request possibly applied (ambiguous) or certainly not?"""
    what = f"Clerk {method} {path}"
    if isinstance(
        exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)
    ):
        raise ProviderFatalError(
            f"{what}: the API URL is unusable ({type(exc).__name__}); check CLERK_API_URL"
        ) from None
    if isinstance(exc, requests.ConnectTimeout) or _never_connected(exc):
        raise ProviderRetryableError(f"{what}: could not connect ({type(exc).__name__})") from None
    if isinstance(exc, requests.ReadTimeout):
        reason = "no answer within the timeout"
    elif isinstance(exc, requests.exceptions.ChunkedEncodingError):
        reason = "the answer was cut off"
    else:
        reason = f"the connection failed ({type(exc).__name__})"
    raise ProviderRetryableError(f"{what}: {reason}", ambiguous=method == "POST") from None


def _never_connected(exc: requests.RequestException) -> bool:
    """True when the TCP connection was never made, so the request cannot have been applied."""
    if not isinstance(exc, requests.ConnectionError) or not exc.args:
        return False
    reason = getattr(exc.args[0], "reason", None)
    return isinstance(reason, NewConnectionError)


def _raise_status(method: str, path: str, resp: requests.Response, trace: str | None) -> NoReturn:
    """Map a non-2xx answer to the error that tells the caller what to do next."""
    status = resp.status_code
    errors = _errors(resp)
    codes = [e["code"] for e in errors] or [f"http_{status}"]
    code = codes[0]
    detail = "; ".join(e["text"] for e in errors) or resp.reason or f"HTTP {status}"
    where = f"Clerk {method} {path}"
    logger.debug("clerk %s %s error codes %s (clerk_trace_id=%s)", method, path, codes, trace)
    if status == 429:
        wait = _retry_after(resp.headers.get("Retry-After"))
        raise ProviderRetryableError(
            f"Clerk rate limit reached ({code}); retry after {wait if wait is not None else 'a while'} s",
            retry_after=wait,
        )
    if status == 409:  # resource_locked / conflict: nothing was applied, try again
        wait = _retry_after(resp.headers.get("Retry-After"))
        raise ProviderRetryableError(f"{where}: {detail} ({code})", retry_after=wait)
    if status >= 500:
        raise ProviderRetryableError(
            f"{where} failed on Clerk's side: HTTP {status} ({code})", ambiguous=method == "POST"
        )
    if status == 401:
        raise ProviderFatalError(f"Clerk refused the secret key ({code}): check CLERK_SECRET_KEY. {detail}")
    if status == 402:
        raise ProviderFatalError(f"Clerk requires a paid plan for this request ({code}): {detail}")
    if status == 403:
        if code == "user_quota_exceeded":
            raise ProviderFatalError(
                f"Clerk user quota reached ({code}): {detail} Development instances are capped "
                "(100 users); use a production key or remove users."
            )
        raise ProviderFatalError(f"Clerk forbade the request ({code}): {detail}")
    if status == 404:
        raise ProviderFatalError(f"{where} answered 404 ({code}): check CLERK_API_URL (it should end in /v1)")
    if status == 415 or status < 400 or method != "POST":
        raise ProviderFatalError(f"{where} was refused: HTTP {status} ({', '.join(codes)}): {detail}")
    taken = [e for e in errors if e["code"] == "form_identifier_exists"]
    if taken:
        params = _unique(p for e in taken for p in e["params"])
        raise AlreadyExistsError(f"Already in Clerk: {detail}", params=params)
    raise RowRejectedError(code, f"Clerk rejected the user: {detail}")


def _errors(resp: requests.Response) -> list[dict[str, Any]]:
    """Clerk's ``errors[]`` as ``{code, text, params}``; tolerant of bodies that are not the envelope."""
    try:
        body = resp.json()
    except ValueError:
        return []
    out = []
    for item in (body.get("errors") or ()) if isinstance(body, dict) else ():
        if not isinstance(item, dict):
            continue
        meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
        params = list(meta.get("param_names") or ())
        if meta.get("param_name"):
            params.insert(0, meta["param_name"])
        text = str(item.get("long_message") or item.get("message") or item.get("code") or "").strip()
        out.append({"code": str(item.get("code") or f"http_{resp.status_code}"), "text": text, "params": params})
    return out


def _trace_id(resp: requests.Response) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("clerk_trace_id"):
        return str(body["clerk_trace_id"])
    return resp.headers.get("Clerk-Trace-Id") or resp.headers.get("cf-ray")


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: Clerk sends an integer, HTTP also allows a date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, float(math.ceil(seconds))) if math.isfinite(seconds) else None


def _account(user: dict[str, Any]) -> Account:
    """A Clerk User JSON as an :class:`Account` (primary email, lower-cased)."""
    addresses = user.get("email_addresses") or []
    primary = next((a for a in addresses if a.get("id") == user.get("primary_email_address_id")), None)
    if primary is None and addresses:
        primary = addresses[0]
    return Account(
        id=str(user["id"]),
        email=str((primary or {}).get("email_address") or "").lower(),
        external_id=user.get("external_id"),
        private_metadata=dict(user.get("private_metadata") or {}),
    )


def _unique(values: Iterable[str]) -> list[str]:
    """Order-preserving de-duplication, dropping empty strings."""
    return list(dict.fromkeys(v for v in values if v))
