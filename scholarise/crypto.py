"""Encryption at rest for stored secrets (SMTP passwords), keyed from ``SCHOLARISE_SECRET_KEY``.

Why Fernet: it is authenticated (AES-128-CBC + HMAC-SHA256), so a tampered or wrong-key value is
refused instead of decrypting to garbage, and each token carries its own random IV and timestamp.

Why HKDF and not PBKDF2: ``SCHOLARISE_SECRET_KEY`` is a long random secret (at least 16 characters,
``secrets.token_urlsafe(48)`` recommended), not a human password, so it needs no key stretching.
HKDF-SHA256 derives a separate 32-byte key for this one purpose (the ``info`` label), so the same
secret can also sign Flask sessions without the two uses ever sharing a key.

Key rotation
------------
1. Generate a new secret and set it as ``SCHOLARISE_SECRET_KEY``; move the old one to
   ``SCHOLARISE_SECRET_KEY_FALLBACKS`` (comma-separated, newest first). Restart the processes.
   Every stored password still decrypts: :class:`SecretBox` tries the current key, then each
   fallback (Fernet's ``MultiFernet``).
2. Run ``scholarise email rotate-key``: it re-encrypts every stored password with the current key
   (:func:`scholarise.email_settings.rotate_passwords`).
3. Remove the old secret from ``SCHOLARISE_SECRET_KEY_FALLBACKS`` and restart.

If the secret is lost, stored passwords cannot be recovered: enter them again in the email settings.
In the embedded mode without ``SCHOLARISE_SECRET_KEY`` the per-instance secret file
(``instance/secret_key``) is the key; keep it with the database.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from scholarise.errors import ConfigError

if TYPE_CHECKING:
    from scholarise.config import Settings

_SALT = b"scholarise-secret-box"
_INFO = b"scholarise/v1/stored-secrets"


class DecryptionError(ConfigError):
    """A stored secret cannot be decrypted with the current key or any fallback (the key changed)."""


def derive_key(secret: str) -> bytes:
    """The Fernet key (urlsafe base64 of 32 bytes) derived from an application secret with HKDF-SHA256.

    Raises:
        ConfigError: the secret is empty.
    """
    if not secret:
        raise ConfigError("SCHOLARISE_SECRET_KEY is empty: stored passwords cannot be encrypted without it.")
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(secret.encode("utf-8"))
    return base64.urlsafe_b64encode(raw)


class SecretBox:
    """Encrypts with the current secret; decrypts with the current secret or any fallback."""

    def __init__(self, secret: str, fallbacks: Sequence[str] = ()) -> None:
        keys = [secret, *[f for f in fallbacks if f and f != secret]]
        self._fernet = MultiFernet([Fernet(derive_key(k)) for k in keys])

    def __repr__(self) -> str:
        return "<SecretBox>"

    def encrypt(self, plaintext: str) -> str:
        """A Fernet token (ASCII) for ``plaintext``; a new random IV every call."""
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The plaintext of a token made by :meth:`encrypt` under the current key or a fallback.

        Raises:
            DecryptionError: no configured key opens the token (the message never contains it).
        """
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError):
            raise DecryptionError(
                "A stored password cannot be decrypted: SCHOLARISE_SECRET_KEY changed. Put the previous key in "
                "SCHOLARISE_SECRET_KEY_FALLBACKS, or enter the password again."
            ) from None

    def rotate(self, token: str) -> str:
        """The same secret re-encrypted under the current key.

        Raises:
            DecryptionError: no configured key opens the token.
        """
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError, ValueError):
            raise DecryptionError(
                "A stored password cannot be re-encrypted: no configured key opens it. Enter it again."
            ) from None


def box_for(settings: Settings) -> SecretBox:
    """The box for ``settings``: ``SCHOLARISE_SECRET_KEY`` (or the embedded per-instance secret) plus fallbacks."""
    return SecretBox(settings.fernet_secret, settings.secret_key_fallbacks)


def encrypt(plaintext: str, settings: Settings) -> str:
    """Encrypt ``plaintext`` under the current key of ``settings``."""
    return box_for(settings).encrypt(plaintext)


def decrypt(token: str, settings: Settings) -> str:
    """Decrypt a stored token with the current key or a fallback.

    Raises:
        DecryptionError: the key changed and no fallback opens the token.
    """
    return box_for(settings).decrypt(token)
