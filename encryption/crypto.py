"""Encryption of secrets at rest: Fernet keys from ENCRYPTION_KEYS, newest first.

MultiFernet decrypts with any listed key and encrypts with the first, so keys can rotate:
put the new key in front, run `manage.py reencrypt_secrets`, then drop the old key.
"""

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables


class DecryptionError(Exception):
    """A stored secret cannot be read with any key in ENCRYPTION_KEYS."""


@cache
def _fernet(keys: tuple[str, ...], fallback_secret: str) -> MultiFernet:
    if not keys:
        # Only reachable with DEBUG on (settings refuse to start otherwise): derive a key
        # from SECRET_KEY so a local experiment works without set-up.
        digest = hashlib.sha256(("b24keeper-dev:" + fallback_secret).encode()).digest()
        keys = (base64.urlsafe_b64encode(digest).decode(),)
    try:
        return MultiFernet([Fernet(key.strip().encode()) for key in keys])
    except ValueError as err:
        raise ImproperlyConfigured(
            "ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe base64 bytes). "
            "Make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from err


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.ENCRYPTION_KEYS), settings.SECRET_KEY)


@sensitive_variables()
def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


@sensitive_variables()
def decrypt(ciphertext: str) -> str:
    try:
        return fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        # Never fall back to returning the stored text: it would be sent as if it were the
        # secret. The message holds no part of the value.
        raise DecryptionError(
            "A stored secret cannot be decrypted with any key in ENCRYPTION_KEYS. "
            "Restore the key it was written with (keep old keys after the new one)."
        ) from None


@sensitive_variables()
def rotate(ciphertext: str) -> str:
    """Re-encrypt a stored value with the newest key."""
    try:
        return fernet().rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "A stored secret cannot be decrypted with any key in ENCRYPTION_KEYS."
        ) from None


def uses_newest_key(ciphertext: str) -> bool:
    """Was this stored value written with the first key of ENCRYPTION_KEYS?"""
    keys = settings.ENCRYPTION_KEYS[:1]
    try:
        _fernet(tuple(keys), settings.SECRET_KEY).decrypt(ciphertext.encode())
    except InvalidToken:
        return False
    return True


def mask(secret: str | None) -> str:
    """What the admin shows instead of a secret: its last 4 characters."""
    if not secret:
        return "—"
    return "••••" + secret[-4:] if len(secret) > 8 else "••••"
