"""Can the stored secrets be read with ENCRYPTION_KEYS? One sample value per table.

Used by the system check (`manage.py check`, and at every worker start) and the health
endpoint: a missing or wrong key shows up at start, not at the first refresh or alert.
"""

from django.apps import apps
from django.db import DatabaseError, connection

from encryption import crypto
from encryption.fields import encrypted_columns


def unreadable_tables() -> list[str]:
    """Labels of the models whose sampled secret does not decrypt. Tables not created yet
    (before the first migrate) and an unreachable database are skipped."""
    try:
        existing = set(connection.introspection.table_names())
    except DatabaseError:
        return []
    failing = []
    for model in apps.get_models():
        columns = encrypted_columns(model)
        if not columns or model._meta.db_table not in existing:
            continue
        sample = _sample(model._meta.db_table, columns)
        if sample is None:
            continue
        try:
            crypto.decrypt(sample)
        except crypto.DecryptionError:
            failing.append(model._meta.label)
    return failing


def _sample(table: str, columns: list[str]) -> str | None:
    quote = connection.ops.quote_name
    for column in map(quote, columns):
        sql = f"SELECT {column} FROM {quote(table)} WHERE {column} <> '' LIMIT 1"  # noqa: S608
        with connection.cursor() as cursor:
            cursor.execute(sql)
            row = cursor.fetchone()
        if row:
            return row[0]
    return None
