"""ClerkProvider against the loopback FakeClerk: every answer Clerk can give, classified.

Also covers the fake's own rules (strict body, rate limit, control endpoint, standalone process),
since other tests rely on it behaving like Clerk.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from scholarise.errors import ProviderFatalError, ProviderRetryableError
from scholarise.providers.base import AlreadyExistsError, NewUser, RowRejectedError
from scholarise.providers.clerk import ClerkProvider
from tests.support.fake_clerk import FakeClerk, remote_control

KEY = "sk_test_provider_tests_secret_0123456789"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[FakeClerk]:
    with FakeClerk(KEY, rate_limit=None) as server:
        yield server


@pytest.fixture
def provider(fake: FakeClerk) -> Iterator[ClerkProvider]:
    clerk = ClerkProvider(fake.url, KEY, timeout=2.0)
    yield clerk
    clerk.close()


def person(n: int = 1, **overrides: object) -> NewUser:
    fields: dict = dict(
        email=f"Person{n}@School.example",
        first_name="Ada",
        last_name=f"L{n}",
        external_id=f"teacher:{n}",
        private_metadata={"branch": "north", "row": n},
    )
    fields.update(overrides)
    return NewUser(**fields)


def api(fake: FakeClerk, method: str, path: str, **kwargs: object) -> requests.Response:
    headers = {"Authorization": f"Bearer {KEY}", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return requests.request(method, fake.url + path, headers=headers, timeout=5, **kwargs)  # type: ignore[arg-type]


# -- creating ---------------------------------------------------------------------------------


def test_create_returns_account_parsed_from_full_user_shape(fake: FakeClerk, provider: ClerkProvider) -> None:
    account = provider.create_user(person(1))
    assert re.fullmatch(r"user_[0-9A-Za-z]{27}", account.id)
    assert account.email == "person1@school.example"
    assert account.external_id == "teacher:1"
    assert account.private_metadata == {"branch": "north", "row": 1}

    (stored,) = fake.users()
    assert stored["object"] == "user" and stored["id"] == account.id
    (address,) = stored["email_addresses"]
    assert re.fullmatch(r"idn_[0-9A-Za-z]{27}", address["id"]) and stored["primary_email_address_id"] == address["id"]
    assert address["verification"]["object"] == "verification_admin"
    assert address["verification"]["status"] == "verified"
    assert stored["created_at"] > 1_600_000_000_000  # unix milliseconds
    for key in ("public_metadata", "unsafe_metadata", "phone_numbers", "web3_wallets", "passkeys", "banned"):
        assert key in stored


def test_fake_refuses_unknown_fields_and_non_json(fake: FakeClerk) -> None:
    resp = api(
        fake,
        "POST",
        "/users",
        json={"email_address": ["a@b.example"], "nickname": "x", "skip_password_requirement": True},
    )
    assert resp.status_code == 422
    body = resp.json()
    assert body["errors"][0]["code"] == "form_param_unknown"
    assert body["errors"][0]["meta"] == {"param_name": "nickname"}
    assert re.fullmatch(r"[0-9a-f]{32}", body["clerk_trace_id"])
    assert resp.headers["Clerk-Trace-Id"] == body["clerk_trace_id"]

    resp = api(
        fake,
        "POST",
        "/users",
        data="email_address=a@b.example",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 415 and resp.json()["errors"][0]["code"] == "unsupported_content_type"


def test_fake_checks_required_identifier_and_password(fake: FakeClerk) -> None:
    resp = api(fake, "POST", "/users", json={"first_name": "No", "skip_password_requirement": True})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["code"] == "form_data_missing"
    assert resp.json()["errors"][0]["meta"]["param_names"] == ["email_address"]
    resp = api(fake, "POST", "/users", json={"email_address": ["p@x.example"]})
    assert resp.json()["errors"][0]["meta"]["param_names"] == ["password"]
    resp = api(fake, "POST", "/users", json={"email_address": ["p@x.example"], "password": "password123"})
    assert resp.json()["errors"][0]["code"] == "form_password_pwned"


def test_duplicate_email_is_already_exists(provider: ClerkProvider) -> None:
    provider.create_user(person(1))
    with pytest.raises(AlreadyExistsError) as info:
        provider.create_user(person(1, external_id="teacher:other", email="PERSON1@school.example"))
    assert info.value.params == ("email_address",)


def test_two_taken_identifiers_give_two_error_entries(fake: FakeClerk, provider: ClerkProvider) -> None:
    provider.create_user(person(1))
    resp = api(
        fake,
        "POST",
        "/users",
        json={
            "email_address": ["person1@school.example"],
            "external_id": "teacher:1",
            "skip_password_requirement": True,
        },
    )
    assert resp.status_code == 422
    assert [(e["code"], e["meta"]["param_name"]) for e in resp.json()["errors"]] == [
        ("form_identifier_exists", "email_address"),
        ("form_identifier_exists", "external_id"),
    ]
    with pytest.raises(AlreadyExistsError) as info:
        provider.create_user(person(1))
    assert set(info.value.params) == {"email_address", "external_id"}
    assert "email address is taken" in str(info.value) and "external ID is taken" in str(info.value)


def test_bad_email_is_row_rejected(provider: ClerkProvider) -> None:
    with pytest.raises(RowRejectedError) as info:
        provider.create_user(person(1, email="not-an-email"))
    assert info.value.code == "form_param_format_invalid"
    assert "must be a valid email address" in str(info.value)


# -- transient and ambiguous failures ---------------------------------------------------------


def test_rate_limit_gives_retry_after() -> None:
    with FakeClerk(KEY, rate_limit=2, window=1.0) as fake:
        clerk = ClerkProvider(fake.url, KEY)
        clerk.find_users(emails=["a@x.example"])
        clerk.create_user(person(1))
        with pytest.raises(ProviderRetryableError) as info:
            clerk.create_user(person(2))
        assert info.value.retry_after == 1.0 and not info.value.ambiguous
        assert fake.stats()["rate_limited"] == 1
        clerk.close()


@pytest.mark.parametrize("kind", ["500", "503", "409"])
def test_injected_server_errors_are_retryable(fake: FakeClerk, provider: ClerkProvider, kind: str) -> None:
    fake.fail_next(kind)
    with pytest.raises(ProviderRetryableError) as info:
        provider.create_user(person(1))
    assert info.value.ambiguous is (kind != "409")
    assert fake.stats()["users"] == 0
    assert provider.create_user(person(1)).email == "person1@school.example"


@pytest.mark.parametrize("kind", ["commit_drop", "commit_500"])
def test_created_then_failed_is_ambiguous_and_found_after(fake: FakeClerk, provider: ClerkProvider, kind: str) -> None:
    fake.fail_next(kind)
    with pytest.raises(ProviderRetryableError) as info:
        provider.create_user(person(7))
    assert info.value.ambiguous
    (account,) = provider.find_users(external_ids=["teacher:7"])
    assert account.email == "person7@school.example" and account.external_id == "teacher:7"
    with pytest.raises(AlreadyExistsError):
        provider.create_user(person(7))
    stats = fake.stats()
    assert stats["created_per_email"] == {"person7@school.example": 1}
    assert stats["post_attempts_per_email"] == {"person7@school.example": 2}


def test_slow_response_beyond_timeout_is_ambiguous(fake: FakeClerk) -> None:
    clerk = ClerkProvider(fake.url, KEY, timeout=0.3)
    fake.fail_next("slow", delay=1.5)
    with pytest.raises(ProviderRetryableError) as info:
        clerk.create_user(person(3))
    assert info.value.ambiguous
    assert [a.external_id for a in clerk.find_users(emails=["person3@school.example"])] == ["teacher:3"]
    clerk.close()


def test_connection_refused_is_retryable_not_ambiguous() -> None:
    with FakeClerk(KEY) as fake:
        url = fake.url
    clerk = ClerkProvider(url, KEY, timeout=1.0)
    with pytest.raises(ProviderRetryableError) as info:
        clerk.create_user(person(1))
    assert not info.value.ambiguous


# -- fatal failures and the secret --------------------------------------------------------------


def test_bad_key_is_fatal_and_never_shown(fake: FakeClerk) -> None:
    secret = "sk_test_wrong_key_that_must_stay_hidden"
    clerk = ClerkProvider(fake.url, secret)
    with pytest.raises(ProviderFatalError) as info:
        clerk.create_user(person(1))
    assert "clerk_key_invalid" in str(info.value) and "CLERK_SECRET_KEY" in str(info.value)
    with pytest.raises(ProviderFatalError):
        clerk.find_users(emails=["a@x.example"])
    for text in (str(info.value), repr(info.value), repr(clerk), str(clerk)):
        assert secret not in text
    resp = requests.get(fake.url + "/users", headers={"Authorization": "Token abc"}, timeout=5)
    assert resp.json()["errors"][0]["code"] == "authorization_header_format_invalid"
    resp = requests.get(fake.url + "/users", timeout=5)
    assert resp.status_code == 401 and resp.json()["errors"][0]["code"] == "authentication_invalid"


def test_quota_and_payment_are_fatal(provider: ClerkProvider, fake: FakeClerk) -> None:
    fake.configure(user_cap=1)
    provider.create_user(person(1))
    with pytest.raises(ProviderFatalError) as info:
        provider.create_user(person(2))
    assert "Clerk user quota reached (user_quota_exceeded)" in str(info.value)
    assert KEY not in str(info.value)
    fake.fail_next("402")
    with pytest.raises(ProviderFatalError, match="paid plan"):
        provider.create_user(person(3))
    fake.fail_next("401")
    with pytest.raises(ProviderFatalError, match="clerk_key_invalid"):
        provider.create_user(person(3))


# -- finding -----------------------------------------------------------------------------------


def test_find_users_chunks_over_100_values_and_paces_every_request(fake: FakeClerk) -> None:
    for n in range(150):
        fake.add_user(f"user{n}@school.example", external_id=f"ext:{n}")
    calls = []
    clerk = ClerkProvider(fake.url, KEY, pace=lambda: calls.append(1))
    emails = [f"USER{n}@school.example" for n in range(150)] + ["nobody@school.example"]
    found = clerk.find_users(emails=emails)
    assert sorted(a.email for a in found) == sorted(e.lower() for e in emails[:150])
    assert len(calls) == 2  # 151 values -> two chunks of at most 100

    found = clerk.find_users(emails=["user1@school.example"], external_ids=["ext:1", "ext:2"])
    assert sorted(a.external_id for a in found) == ["ext:1", "ext:2"]  # merged by id, no duplicate
    assert len(calls) == 4

    clerk.create_user(person(1))
    assert len(calls) == 5
    stats = fake.stats()
    assert stats["requests_total"] == 5
    assert stats["requests"]["GET /v1/users"] == {"200": 4}
    clerk.close()


def test_find_users_edge_values(fake: FakeClerk, provider: ClerkProvider) -> None:
    calls = []
    provider.pace = lambda: calls.append(1)
    assert provider.find_users() == [] and provider.find_users(emails=["", "  "]) == []
    assert calls == []  # nothing to look up, nothing spent from the rate budget
    fake.add_user("odd@x.example", external_id="-odd")  # Clerk would read a bare "-odd" as "exclude odd"
    fake.add_user("even@x.example", external_id="even")
    assert [a.email for a in provider.find_users(external_ids=["-odd"])] == ["odd@x.example"]


def test_fake_list_limits_filters_and_count(fake: FakeClerk) -> None:
    for n in range(12):
        fake.add_user(f"u{n}@x.example", external_id=f"e{n}")
    resp = api(fake, "GET", "/users")
    assert resp.status_code == 200 and len(resp.json()) == 10  # default limit
    assert resp.json()[0]["email_addresses"][0]["email_address"] == "u11@x.example"  # newest first
    assert "private_metadata" in resp.json()[0]
    assert len(api(fake, "GET", "/users", params={"limit": 500, "offset": 10}).json()) == 2
    assert api(fake, "GET", "/users", params={"limit": 501}).status_code == 400
    too_many = [("email_address", f"z{n}@x.example") for n in range(101)]
    assert api(fake, "GET", "/users", params=too_many).status_code == 400
    both = api(fake, "GET", "/users", params=[("email_address", "u1@x.example"), ("external_id", "e2")])
    assert both.json() == []  # different filter kinds are ANDed
    resp = api(fake, "GET", "/users/count", params=[("external_id", "e1"), ("external_id", "e2")])
    assert resp.json() == {"object": "total_count", "total_count": 2}


# -- the fake itself -----------------------------------------------------------------------------


def test_fake_rate_limit_is_a_sliding_window_per_key() -> None:
    with FakeClerk([KEY, "sk_test_other"], rate_limit=3, window=1.0) as fake:
        statuses = [api(fake, "GET", "/users/count").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        blocked = api(fake, "GET", "/users")
        assert blocked.headers["Retry-After"] == "1"
        assert blocked.json()["errors"][0]["code"] == "too_many_requests"
        other = requests.get(fake.url + "/users", headers={"Authorization": "Bearer sk_test_other"}, timeout=5)
        assert other.status_code == 200  # a separate budget per key
        time.sleep(1.05)
        assert api(fake, "GET", "/users").status_code == 200


def test_control_endpoint_over_http(fake: FakeClerk) -> None:
    stats = remote_control(fake.url, {"fail_next": [{"kind": "503", "count": 2}], "delay": 0})
    assert stats["pending_faults"] == ["503", "503"]
    assert requests.post(fake.origin + "/__control", json={"bogus": 1}, timeout=5).status_code == 400
    body = {"email_address": ["c@x.example"], "skip_password_requirement": True}
    assert [api(fake, "POST", "/users", json=body).status_code for _ in range(3)] == [503, 503, 200]
    stats = remote_control(fake.url)
    assert stats["requests"]["POST /v1/users"] == {"503": 2, "200": 1}
    assert stats["users"] == 1 and stats["post_attempts_per_email"] == {"c@x.example": 3}
    remote_control(fake.url, {"reset": True})
    assert fake.stats()["users"] == 0


def test_standalone_process_serves_until_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    cmd = [
        sys.executable,
        "-m",
        "tests.support.fake_clerk",
        "--port",
        "0",
        "--rate-limit",
        "50",
        "--window",
        "10",
        "--secret-key",
        KEY,
        "--state-file",
        str(state),
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
        clerk = ClerkProvider(url, KEY)
        account = clerk.create_user(person(9))
        assert [a.id for a in clerk.find_users(external_ids=["teacher:9"])] == [account.id]
        clerk.close()
        assert remote_control(url)["settings"]["rate_limit"] == 50
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert account.id in state.read_text()


def test_fake_is_thread_safe_under_concurrent_duplicates(fake: FakeClerk) -> None:
    clerk = ClerkProvider(fake.url, KEY)

    def attempt(_: int) -> str:
        try:
            clerk.create_user(person(5))
            return "created"
        except AlreadyExistsError:
            return "exists"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = sorted(pool.map(attempt, range(16)))
    assert outcomes == ["created"] + ["exists"] * 15
    assert fake.stats()["created_per_email"] == {"person5@school.example": 1}
    clerk.close()
