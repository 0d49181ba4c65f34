"""Key rotation for encrypted columns, row by row, without racing live writers."""

from django.db import connection, models

from encryption import crypto
from encryption.fields import encrypted_columns


def reencrypt_model(model: type[models.Model]) -> int:
    """Rewrite each encrypted value of `model` with the newest key; returns values changed.

    Works on raw ciphertext with a compare-and-set UPDATE (WHERE column = old ciphertext), so
    a refresh that writes a new token meanwhile is never overwritten with an older value.
    """
    columns = encrypted_columns(model)
    if not columns:
        return 0
    table = connection.ops.quote_name(model._meta.db_table)
    pk = connection.ops.quote_name(model._meta.pk.column)
    changed = 0
    for column in map(connection.ops.quote_name, columns):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {pk}, {column} FROM {table} WHERE {column} <> ''")  # noqa: S608
            rows = cursor.fetchall()
        for row_id, ciphertext in rows:
            rotated = crypto.rotate(ciphertext)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {table} SET {column} = %s WHERE {pk} = %s AND {column} = %s",  # noqa: S608
                    [rotated, row_id, ciphertext],
                )
                changed += cursor.rowcount
    return changed
