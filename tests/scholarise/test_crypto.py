"""Stored secrets are encrypted with a key derived from SCHOLARISE_SECRET_KEY, and the key can be rotated."""

from __future__ import annotations

import pytest

from scholarise import crypto
from scholarise.config import Settings
from scholarise.crypto import DecryptionError, SecretBox

PASSWORD = "correct horse battery staple ✓"


def test_a_secret_round_trips_and_the_token_is_not_the_plaintext(settings: Settings) -> None:
    token = crypto.encrypt(PASSWORD, settings)
    assert PASSWORD not in token
    assert crypto.decrypt(token, settings) == PASSWORD


def test_every_encryption_uses_a_fresh_iv(settings: Settings) -> None:
    assert crypto.encrypt(PASSWORD, settings) != crypto.encrypt(PASSWORD, settings)


def test_the_derived_key_depends_on_the_secret_and_is_not_the_secret() -> None:
    key = crypto.derive_key("a" * 32)
    assert key != crypto.derive_key("b" * 32)
    assert b"a" * 32 not in key


def test_a_token_from_another_key_is_refused_with_a_message_that_says_what_to_do(settings: Settings) -> None:
    token = crypto.encrypt(PASSWORD, settings)
    other = settings.replace(secret_key="a-completely-different-secret-key")
    with pytest.raises(DecryptionError) as caught:
        crypto.decrypt(token, other)
    message = str(caught.value)
    assert "SCHOLARISE_SECRET_KEY_FALLBACKS" in message
    assert PASSWORD not in message and token not in message


def test_rotating_the_key_keeps_old_tokens_readable_until_they_are_re_encrypted(settings: Settings) -> None:
    old_token = crypto.encrypt(PASSWORD, settings)
    rotated_settings = settings.replace(secret_key="the-new-secret-key-0123456789",
                                        secret_key_fallbacks=(settings.secret_key,))
    assert crypto.decrypt(old_token, rotated_settings) == PASSWORD
    new_token = crypto.box_for(rotated_settings).rotate(old_token)
    without_fallback = rotated_settings.replace(secret_key_fallbacks=())
    assert crypto.decrypt(new_token, without_fallback) == PASSWORD
    with pytest.raises(DecryptionError):
        crypto.decrypt(old_token, without_fallback)


def test_the_embedded_mode_without_a_secret_key_uses_the_stable_instance_secret(settings: Settings) -> None:
    embedded = settings.replace(secret_key="")
    token = crypto.encrypt(PASSWORD, embedded)
    assert crypto.decrypt(token, settings.replace(secret_key="")) == PASSWORD
    assert (settings.instance_path / "secret_key").is_file()


def test_reprs_never_show_keys_or_secrets(settings: Settings) -> None:
    box = SecretBox(settings.secret_key)
    assert repr(box) == "<SecretBox>"
    with_fallback = settings.replace(secret_key_fallbacks=("an-old-secret-key-0123456789",), mail_password="pw-123")
    assert "an-old-secret-key" not in repr(with_fallback)
    assert settings.secret_key not in repr(with_fallback)
    assert "pw-123" not in repr(with_fallback)
