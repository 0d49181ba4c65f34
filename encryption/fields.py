"""A model field that stores text encrypted with the keys in ENCRYPTION_KEYS."""

from typing import Any

from django.db import models

from encryption import crypto


class EncryptedTextField(models.TextField):
    """Plain text in Python, Fernet ciphertext in the database; '' stays ''.

    Values cannot be searched or compared in SQL: Fernet ciphertexts differ on every write.
    """

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if not value:
            return value
        return crypto.decrypt(value)

    def get_prep_value(self, value: Any) -> str | None:
        value = super().get_prep_value(value)
        if not value:
            return value
        return crypto.encrypt(value)

    def get_lookup(self, lookup_name: str) -> Any:
        # Only IS NULL means anything on a ciphertext.
        if lookup_name != "isnull":
            return None
        return super().get_lookup(lookup_name)


def encrypted_fields(model: type[models.Model]) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]


def encrypted_columns(model: type[models.Model]) -> list[str]:
    """The database columns of `model`'s encrypted fields, for raw SQL over ciphertext."""
    return [f.column for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
