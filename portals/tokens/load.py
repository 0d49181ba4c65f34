"""Reading a token for the refresh flow: with its portal and app, or (the hot path of
get_access_token) with only what serving its access token needs. A token whose secrets cannot
be decrypted is recorded as a configuration error (portals.tokens.state) and raised as
TokenConfigurationError; an unknown one is TokenNotFound. Every token read here carries
`db_now`, the database's time when it was read."""

from django.db.models import QuerySet

from core.dbclock import DbNow
from encryption.crypto import DecryptionError
from portals.bitrix.errors import ConfigurationError
from portals.models import Token
from portals.tokens import state
from portals.tokens.errors import TokenConfigurationError, TokenNotFound


def load(**lookup: object) -> Token:
    """The token with its portal and app; TokenNotFound, or TokenConfigurationError (after
    recording it on the token) when its secrets cannot be decrypted."""
    return _load(Token.objects.select_related("portal", "app"), lookup)


def load_access(**lookup: object) -> Token:
    """load() for reading the access token only, the hot path of get_access_token(): the
    refresh token and the app (with its client secret) are neither fetched nor decrypted."""
    return _load(Token.objects.select_related("portal").defer("refresh_token"), lookup)


def _load(rows: "QuerySet[Token]", lookup: dict[str, object]) -> Token:
    try:
        # `db_now`: the database's clock, read with the row, is what freshness and the refresh
        # lease are judged by (core.dbclock), never this process's clock.
        return rows.annotate(db_now=DbNow()).get(**lookup)
    except Token.DoesNotExist:
        what = ", ".join(f"{key} “{value}”" for key, value in lookup.items())
        raise TokenNotFound(f"No token with {what}: check the reference.") from None
    except DecryptionError:
        token = Token.objects.select_related("portal", "app").defer(*state.SECRETS).get(**lookup)
    error = _unreadable(token)
    state.record_unreadable(token, error)
    raise TokenConfigurationError(str(error), error.setting)


def _unreadable(token: Token) -> ConfigurationError:
    return ConfigurationError(
        f"A stored secret of token “{token.reference}” (its tokens or its app's client secret) "
        "cannot be decrypted with any key in ENCRYPTION_KEYS. Put the key it was written with "
        "back into ENCRYPTION_KEYS (after the newest one) and restart; the token then recovers "
        "by itself.",
        setting="ENCRYPTION_KEYS",
    )
