"""Key rotation for encrypted columns: in batches, while refreshes keep writing.

Works on raw ciphertext, so nothing is decrypted into a model and saved back. Each value is
rewritten with a compare-and-set UPDATE (`WHERE id = … AND column = <the ciphertext read>`),
one statement at a time, outside any long transaction: a refresh that stores a new token
between our read and our write wins (our UPDATE then matches nothing, and the refresh's value
is already under the newest key if its process has the new ENCRYPTION_KEYS). Rows are read
`batch` at a time in primary-key order, so a table of any size never sits in memory.

Values already under the newest key are left alone, so a second run only rewrites what the
first missed; `stale_values` says how many remain, which must be 0 before the old key goes.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field

from django.apps import apps
from django.db import connection, models

from encryption import crypto
from encryption.fields import encrypted_columns

BATCH = 500


@dataclass
class Rotation:
    """What one pass over the encrypted columns did."""

    rewritten: int = 0  # re-encrypted with the newest key by us
    current: int = 0  # already under the newest key
    changed_meanwhile: int = 0  # a live writer replaced the value before our write
    unreadable: dict[str, int] = field(default_factory=dict)  # model label -> values

    def add(self, other: "Rotation") -> None:
        self.rewritten += other.rewritten
        self.current += other.current
        self.changed_meanwhile += other.changed_meanwhile
        for label, count in other.unreadable.items():
            self.unreadable[label] = self.unreadable.get(label, 0) + count


def encrypted_models() -> list[type[models.Model]]:
    return [model for model in apps.get_models() if encrypted_columns(model)]


def reencrypt_model(model: type[models.Model], batch: int = BATCH) -> Rotation:
    """Rewrite each encrypted value of `model` that is not under the newest key."""
    result = Rotation()
    table = connection.ops.quote_name(model._meta.db_table)
    pk = connection.ops.quote_name(model._meta.pk.column)
    for column in map(connection.ops.quote_name, encrypted_columns(model)):
        for row_id, ciphertext in _values(table, pk, column, batch):
            if crypto.uses_newest_key(ciphertext):
                result.current += 1
                continue
            try:
                rotated = crypto.rotate(ciphertext)
            except crypto.DecryptionError:
                label = model._meta.label
                result.unreadable[label] = result.unreadable.get(label, 0) + 1
                continue
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} SET {column} = %s WHERE {pk} = %s AND {column} = %s",  # noqa: S608
                    [rotated, row_id, ciphertext],
                )
                if cursor.rowcount == 1:
                    result.rewritten += 1
                else:
                    result.changed_meanwhile += 1
    return result


def _values(table: str, pk: str, column: str, batch: int) -> Iterator[tuple[int, str]]:
    """(primary key, ciphertext) of every non-empty value, `batch` rows per query."""
    last = None
    while True:
        after = f"AND {pk} > %s" if last is not None else ""
        sql = (
            f"SELECT {pk}, {column} FROM {table} WHERE {column} <> '' {after} "  # noqa: S608
            f"ORDER BY {pk} LIMIT %s"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [last, batch] if last is not None else [batch])
            rows = cursor.fetchall()
        yield from rows
        if len(rows) < batch:
            return
        last = rows[-1][0]


def stale_values() -> dict[str, int]:
    """How many stored values each model still has under an older key (or none readable)."""
    stale = {}
    for model in encrypted_models():
        table = connection.ops.quote_name(model._meta.db_table)
        pk = connection.ops.quote_name(model._meta.pk.column)
        count = 0
        for column in map(connection.ops.quote_name, encrypted_columns(model)):
            count += sum(
                1
                for _, value in _values(table, pk, column, BATCH)
                if not crypto.uses_newest_key(value)
            )
        if count:
            stale[model._meta.label] = count
    return stale
