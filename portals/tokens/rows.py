"""Rows of the few refresh statements the ORM cannot say (an UPDATE that returns the row it
wrote, a claim that returns the token with its portal and app), turned into what the ORM
would have made of them: each column through its field's converters (EncryptedTextField
decrypts, SQLite's text becomes datetimes), then `Model.from_db`.

Only SQL text and conversion live here; portals.tokens.state runs the statements (it stays the
only writer of a token's state).
"""

import functools
from typing import Any, TypeVar

from django.db import connection
from django.db.models import DateTimeField, Field, Model
from django.db.models.expressions import Col

from core.dbclock import SQLITE_FORMAT

M = TypeVar("M", bound=Model)


def now_sql() -> tuple[str, list[Any]]:
    """The database's clock in SQL (core.dbclock's DbNow), with its parameters."""
    if connection.vendor == "sqlite":
        return "strftime(%s, 'now')", [SQLITE_FORMAT]
    return "clock_timestamp()", []


def columns(model: type[Model], alias: str) -> tuple[list[Field], str]:
    """The model's concrete fields, and their columns as `alias."column"`, comma-separated."""
    fields = list(model._meta.concrete_fields)
    return fields, ", ".join(f'{alias}."{field.column}"' for field in fields)


def convert(field: Field, value: Any, table: str = "") -> Any:
    """One column's value as the ORM reads it."""
    expression, converters = _converters(field, table, connection.vendor)
    for converter in converters:
        value = converter(value, expression, connection)
    return value


@functools.cache
def _converters(field: Field, table: str, vendor: str) -> tuple[Col, list[Any]]:
    # Asked once per column (and database kind), as the ORM's compiler asks once per query.
    expression = Col(table, field)
    converters = connection.ops.get_db_converters(expression)
    return expression, converters + expression.get_db_converters(connection)


def instance(model: type[M], fields: list[Field], values: tuple[Any, ...] | list[Any]) -> M:
    """A model instance from a row's values for `fields` (as columns() listed them)."""
    table = model._meta.db_table
    converted = [convert(field, value, table) for field, value in zip(fields, values, strict=True)]
    return model.from_db(connection.alias, [field.attname for field in fields], converted)


def timestamp(value: Any) -> Any:
    """A datetime computed in SQL (now_sql()), as the ORM reads a DateTimeField."""
    return convert(DateTimeField(), value)


def db_params(model: type[Model], values: dict[str, Any]) -> list[Any]:
    """Values for model fields, prepared for a statement as the ORM's UPDATE would send them
    (encrypted fields encrypted, datetimes adapted)."""
    fields = {field.name: field for field in model._meta.concrete_fields}
    return [fields[name].get_db_prep_save(value, connection) for name, value in values.items()]


def store_pair_sql(now: str, reactivated: int) -> str:
    """The pair's UPDATE (portals.tokens.state.store_pair), returning the row it leaves.
    Parameters: access token, refresh token, expiry, the `reactivated` statuses, ACTIVE, the
    clock's, the id, the version; the clock's again."""
    return (
        "UPDATE portals_token SET access_token = %s, refresh_token = %s, expires_at = %s, "  # noqa: S608
        f"version = version + 1, status = CASE WHEN status IN ({', '.join(['%s'] * reactivated)}) "
        f"THEN %s ELSE status END, refresh_started_at = NULL, last_refreshed_at = {now} "
        "WHERE id = %s AND version = %s RETURNING version, status, failure_count, "
        f"failing_since, client_endpoint, user_id, app_status, {now}"
    )


def claim_due_sql(token_id: int, lease_seconds: float, statuses: list[str]) -> tuple[str, list]:
    """PostgreSQL: the sweep's refresh claim on one token and the read of it, with its portal
    and app, in one statement. The row is locked, its stamp judged (no stamp and the schedule
    has come, or a stamp older than the lease: an interrupted refresh), stamped with the
    database's clock, and returned with the stamp it replaced and the database's time."""
    from portals.models import AppCredentials, Portal, Token

    _, token_columns = columns(Token, "claimed")
    _, portal_columns = columns(Portal, "p")
    _, app_columns = columns(AppCredentials, "a")
    marks = ", ".join(["%s"] * len(statuses))
    sql = (
        "WITH previous AS (SELECT id, refresh_started_at FROM portals_token "  # noqa: S608
        f"WHERE id = %s AND status IN ({marks}) "
        "AND (status = 'config_error' OR refresh_token <> '') "
        "AND ((refresh_started_at IS NULL AND next_refresh_at <= clock_timestamp()) "
        "OR refresh_started_at < clock_timestamp() - %s * interval '1 second') FOR UPDATE), "
        "claimed AS (UPDATE portals_token t SET refresh_started_at = clock_timestamp() "
        "FROM previous WHERE t.id = previous.id "
        "RETURNING t.*, previous.refresh_started_at AS previous_start) "
        f"SELECT {token_columns}, {portal_columns}, {app_columns}, claimed.previous_start, "
        "clock_timestamp() FROM claimed "
        "JOIN portals_portal p ON p.id = claimed.portal_id "
        "JOIN portals_appcredentials a ON a.id = claimed.app_id"
    )
    return sql, [token_id, *statuses, lease_seconds]


def claimed_token(row: tuple[Any, ...]) -> tuple[Any, Any]:
    """The token (with portal, app and `db_now`) and the stamp it replaced, from a row of
    claim_due_sql(). Raises DecryptionError when a secret cannot be read."""
    from portals.models import AppCredentials, Portal, Token

    token_fields, _ = columns(Token, "")
    portal_fields, _ = columns(Portal, "")
    app_fields, _ = columns(AppCredentials, "")
    ends = len(token_fields), len(token_fields) + len(portal_fields)
    token = instance(Token, token_fields, row[: ends[0]])
    token.portal = instance(Portal, portal_fields, row[ends[0] : ends[1]])
    token.app = instance(AppCredentials, app_fields, row[ends[1] : ends[1] + len(app_fields)])
    token.db_now = timestamp(row[-1])  # type: ignore[attr-defined]  # as load() annotates

    return token, timestamp(row[-2])


def claim_sweep_sql(now: str, statuses: list[str]) -> str:
    """PostgreSQL: the sweep's claim in one statement (portals.tokens.state.claim_due).
    Interrupted refreshes first (a handful, on token_in_flight_idx), then the schedule, most
    overdue first (token_due_idx), each locked with SKIP LOCKED; the first `limit` of them get
    `claimed_until`, and their ids come back in that order. The database's clock is read once
    (`clock`), so each index gets it as a bound instead of a filter on every row. Parameters:
    the clock's (for `now`), the statuses, the lease in seconds, the limit, the statuses, the
    limit, the limit, the claim's length in seconds."""
    marks = ", ".join(["%s"] * len(statuses))
    return (
        f"WITH clock AS (SELECT ({now})::timestamptz AS at), "  # noqa: S608
        # Oldest stamp first, in token_in_flight_idx's order: ordered by next_refresh_at, the
        # planner would walk token_due_idx through every row for the handful in flight.
        "interrupted AS (SELECT id, next_refresh_at FROM portals_token "
        f"WHERE status IN ({marks}) AND refresh_started_at IS NOT NULL AND refresh_started_at < "
        "(SELECT at FROM clock) - %s * interval '1 second' "
        "ORDER BY refresh_started_at LIMIT %s FOR UPDATE SKIP LOCKED), "
        "scheduled AS (SELECT id, next_refresh_at FROM portals_token "
        f"WHERE status IN ({marks}) AND next_refresh_at <= (SELECT at FROM clock) "
        "AND (claimed_until IS NULL OR claimed_until < (SELECT at FROM clock)) "
        "AND id NOT IN (SELECT id FROM interrupted) "
        "ORDER BY next_refresh_at LIMIT %s FOR UPDATE SKIP LOCKED), "
        "picked AS (SELECT id, 0 AS tier, next_refresh_at FROM interrupted UNION ALL "
        "SELECT id, 1, next_refresh_at FROM scheduled ORDER BY 2, 3 LIMIT %s), "
        "claimed AS (UPDATE portals_token t "
        "SET claimed_until = (SELECT at FROM clock) + %s * interval '1 second' "
        "FROM picked WHERE t.id = picked.id RETURNING t.id) "
        "SELECT picked.id FROM picked JOIN claimed ON claimed.id = picked.id "
        "ORDER BY picked.tier, picked.next_refresh_at"
    )
