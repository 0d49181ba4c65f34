"""Kept for the old migrations, which import EncryptedTextField from here; new code imports
it from encryption.fields."""

from encryption.fields import EncryptedTextField, encrypted_fields

__all__ = ["EncryptedTextField", "encrypted_fields"]
