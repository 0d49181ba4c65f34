"""The database's clock: the one judge of claims, leases, due times and freshness.

Every process (web, worker, beat, a consumer's script) may run on a host whose clock is off;
what two of them compare (is this claim stale, is this token due, has it expired) must be
judged by one clock, the database's. `DbNow()` is that clock inside a statement (an UPDATE's
value, a filter, or an annotation read with the row, so it costs no extra query); `now()`
asks for it when a value is needed on its own.

PostgreSQL: `clock_timestamp()` (the time the expression runs, not the transaction's start);
SQLite: `strftime('%Y-%m-%d %H:%M:%f','now')`.

Who may call: any room that compares or writes times other processes compare (portals.tokens,
notifications, ops.observe). Display code keeps timezone.now().
"""

from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import DateTimeField, Func, Value

SQLITE_FORMAT = "%Y-%m-%d %H:%M:%f"


class DbNow(Func):
    """The database's current time, as the statement runs."""

    template = "clock_timestamp()"
    output_field = DateTimeField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        # The format goes as a parameter: a literal % would meet Django's placeholder rules.
        strftime = Func(
            Value(SQLITE_FORMAT), Value("now"), function="strftime", output_field=DateTimeField()
        )
        return compiler.compile(strftime)


def now() -> datetime:
    """The database's current time (one query)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT strftime(%s, 'now')", [SQLITE_FORMAT])
        else:
            cursor.execute("SELECT clock_timestamp()")
        value = cursor.fetchone()[0]
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
